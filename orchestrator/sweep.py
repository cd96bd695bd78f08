"""The study as a Ray Tune run: the only module that imports Ray Tune.

Each trial is a function trainable, a thin adapter over ``trainables.trial.run_trial``:
it reports ``train_loss`` / ``val_dice`` each epoch with ``tune.report``, hands Tune
the trial's checkpoint folder, and resumes from ``tune.get_checkpoint()`` when Tune
retries it after a failure. Logging to MLflow happens inside the trial (see README).

The validated study, the paths and the checkpoint cadence reach every trial once, through
``tune.with_parameters`` (Ray's object store): no trial parses or re-checks the study file,
and Tune's own trial config holds only the trial key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ray import tune

from orchestrator.progress import ProgressPrinter
from trainables.config import StudyConfig
from trainables.schema import GPU_UNUSABLE_TAG
from trainables.spec import TrialSpec

if TYPE_CHECKING:
    from trainables.training import EpochReport


@dataclass(frozen=True)
class SweepPaths:
    """Absolute locations every trial must agree on (trials run in folders of their own)."""

    tracking_uri: str
    cache_root: str
    storage_path: str


def trial_work_dir(storage_path: str, study: str, trial_id: str) -> Path:
    """Where a trial keeps its latest state: under the storage path when that is a folder.

    A driver that dies and is started again finds the state there and the trial
    resumes; Tune's own checkpoints cover a trial moved to another node.
    """
    if "://" in storage_path:
        return Path(tempfile.mkdtemp(prefix=f"skipsweep-{trial_id}-"))
    return Path(storage_path) / study / "work" / trial_id


def resource_params(cpu: float, gpu: float) -> dict[str, str]:
    """The share of the cluster Ray gave this trial, as run params: CPUs, GPU fraction, and the CUDA devices it
    sees (``none`` without one): which runs shared a device can be read back from them."""
    import ray

    devices = ",".join(str(d) for d in ray.get_gpu_ids()) if ray.is_initialized() else ""  # (it would start Ray)
    return {"resources.cpu": f"{cpu:g}", "resources.gpu": f"{gpu:g}", "cuda_devices": devices or "none"}


def _unusable_gpu(gpu_per_trial: float, required: bool = False) -> dict[str, str]:
    """The ``skipsweep.gpu_unusable`` tag (and a warning in the trial's log) when Ray gave this trial a GPU share
    on a node where CUDA cannot be used (a node that declares GPUs it does not have, a broken driver): the trial
    then trains on the CPU, and the record says why. With ``resources.require_gpu`` it fails at once instead.

    Raises:
        RuntimeError: ``required`` and CUDA is not usable here.
    """
    import torch

    if gpu_per_trial <= 0 or torch.cuda.is_available():
        return {}
    import ray

    where = (
        f"given {gpu_per_trial:g} GPU (CUDA devices {resource_params(0, 0)['cuda_devices']}) on node "
        f"{ray.util.get_node_ip_address()}, but CUDA is not usable there"
    )
    if required:
        raise RuntimeError(f"resources.require_gpu: {where}; not training on the CPU")
    note = f"{where}: trained on the CPU"
    logging.getLogger("trainables.trial").warning(note)
    return {GPU_UNUSABLE_TAG: note}


def _node_tags() -> dict[str, str]:
    """Where this attempt of the trial runs; a retry on another node replaces them."""
    import ray

    context = ray.get_runtime_context()
    return {"ray.node_id": context.get_node_id(), "ray.node_ip": ray.util.get_node_ip_address()}


def _trainable(
    settings: dict,
    *,
    study: StudyConfig,
    paths: SweepPaths,
    checkpoint_every: int,
    device: str | None = None,
    after_epoch: Callable[[EpochReport], None] | None = None,
    gpu_per_trial: float = 0.0,
) -> None:
    """One trial in a Ray worker: ``settings["trial"]`` is its key; the rest comes from ``tune.with_parameters``."""
    from trainables.state import STATE_FILE  # torch and MONAI: imported in the worker only, once
    from trainables.trial import run_trial

    spec = TrialSpec(**settings["trial"])
    work_dir = trial_work_dir(paths.storage_path, study.study, spec.trial_id)
    work_dir.mkdir(parents=True, exist_ok=True)

    def report(epoch: EpochReport) -> None:
        metrics = {
            "epoch": epoch.epoch,
            "train_loss": epoch.train_loss,
            "best_val_dice": epoch.best_val_dice,
            "epoch_seconds": epoch.seconds,
            "variant": spec.variant,
        }
        if epoch.val_dice is not None:
            metrics["val_dice"] = epoch.val_dice
        if (epoch.epoch + 1) % checkpoint_every == 0 or epoch.last:
            with tempfile.TemporaryDirectory() as folder:
                shutil.copy(epoch.checkpoint_dir / STATE_FILE, Path(folder) / STATE_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)
        if after_epoch is not None:
            after_epoch(epoch)

    # the trial resumes from work_dir's state.pt; when that is missing or corrupt (set aside), from Tune's checkpoint
    with _tune_checkpoint() as tune_state:
        result = run_trial(  # on failure the state stays in work_dir for the retry
            spec,
            study,
            work_dir=work_dir,
            tracking_uri=paths.tracking_uri,
            cache_root=paths.cache_root,
            resume_from=tune_state,
            on_epoch=report,
            extra_tags={**_node_tags(), **_unusable_gpu(gpu_per_trial, study.resources.require_gpu)},
            extra_params=resource_params(study.resources.cpu, gpu_per_trial),
            threads=max(1, round(study.resources.cpu)),  # torch uses exactly the CPUs Ray gave the trial
            device=device,
        )
    shutil.rmtree(work_dir, ignore_errors=True)  # everything of value is in MLflow now
    tune.report(
        {
            "done": True,
            "variant": spec.variant,
            "best_val_dice": result.best_val_dice,
            "skipped": result.skipped,
            "run_id": result.run_id,
        }
    )


@contextlib.contextmanager
def _tune_checkpoint() -> Iterator[Path | None]:
    """The folder of the trial's latest Tune checkpoint (local, or downloaded until the block ends); None: none."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as folder:
        yield Path(folder)


class _OneLine(logging.Filter):
    """Tune's and Train's log records in one line each: the message's first line and its error's last.

    A failed trial's whole traceback is in its MLflow run (``failed_attempts/``) and in Tune's
    ``error.txt``; ``--verbose`` shows Tune's logs as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("ray.tune", "ray.train")):
            lines = [line.strip() for line in record.getMessage().splitlines() if line.strip()]
            if record.exc_info and record.exc_info[1] is not None:  # a task error's text ends with the trial's own
                error = record.exc_info[1]
                said = [line.strip() for line in str(error).splitlines() if line.strip()]
                lines.append(said[-1] if said else type(error).__name__)
            record.msg = " ... ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else ""
            record.args, record.exc_info, record.exc_text, record.stack_info = None, None, None, None
        return True


def fit_quietly(tuner: tune.Tuner, verbose: bool = False) -> tune.ResultGrid:
    """``tuner.fit()`` with Tune's and Train's log records in one line each (:class:`_OneLine`) unless ``verbose``."""
    one_line = _OneLine()
    handlers = [] if verbose else logging.getLogger("ray").handlers  # Ray logs through its own handler
    for handler in handlers:
        handler.addFilter(one_line)
    try:
        return tuner.fit()
    finally:
        for handler in handlers:
            handler.removeFilter(one_line)


def run_sweep(
    study: StudyConfig,
    specs: list[TrialSpec],
    paths: SweepPaths,
    gpu_per_trial: float,
    checkpoint_every: int = 1,
    verbose: bool = False,
    after_epoch: Callable[[EpochReport], None] | None = None,
) -> dict[str, str]:
    """Run the trials on the connected Ray cluster; return trial id -> final state.

    Args:
        study: the validated study.
        specs: the trials to run (finished ones already left out).
        paths: absolute tracking URI, cache root and storage path.
        gpu_per_trial: the GPU fraction, already checked against the cluster.
        checkpoint_every: hand Tune a checkpoint every this many epochs (and at the last).
        verbose: Tune's own progress tables and logs (a failed trial's traceback included) instead of the
            compact lines.
        after_epoch: called in the trial's worker after each epoch, once Tune has its metrics (and checkpoint);
            Ray sends it to the workers, so it must pickle (a function of ``__main__`` travels by value).

    Returns:
        ``{trial_id: "TERMINATED" | "ERROR" | "NOT_RUN"}``.
    """
    # validated once, in the driver (absolute data and texture paths): trials get the object, not a dump to re-parse
    device = "cpu" if gpu_per_trial == 0 else None  # a trial given no GPU never takes one on a GPU node
    with_study = tune.with_parameters(
        _trainable,
        study=study,
        paths=paths,
        checkpoint_every=checkpoint_every,
        device=device,
        after_epoch=after_epoch,
        gpu_per_trial=gpu_per_trial,
    )
    trainable = tune.with_resources(with_study, {"cpu": study.resources.cpu, "gpu": gpu_per_trial})
    param_space = {"trial": tune.grid_search([asdict(spec) for spec in specs])}  # the key only: Tune's config
    progress = ProgressPrinter(study.study, [spec.variant for spec in specs], started=time.monotonic())
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C stops the driver (orchestrator.interrupts), not Tune
    # read when the Tuner starts: num_to_keep=1 forces a snapshot at each checkpoint, so Tune's warning is noise
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=study.resources.max_concurrent_trials,
            reuse_actors=True,  # a worker runs trial after trial: torch, MONAI and MLflow are imported once
            trial_dirname_creator=lambda trial: f"{trial.config['trial']['variant']}_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=study.study,
            storage_path=paths.storage_path,
            failure_config=tune.FailureConfig(max_failures=study.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[progress],
            verbose=2 if verbose else 0,
        ),
    )
    results = fit_quietly(tuner, verbose)
    outcome = {spec.trial_id: "NOT_RUN" for spec in specs}  # a trial Tune never started has no config
    for result in results:
        if result.config:
            spec = TrialSpec(**result.config["trial"])
            outcome[spec.trial_id] = "ERROR" if result.error is not None else "TERMINATED"
    progress.final()
    return outcome
