"""One trial: (study, dataset, variant, train_alpha, seed) trained, evaluated and tracked.

``run_trial`` is a plain function: the Ray Tune sweep, the benchmarks and a notebook
all call it.

    from trainables.config import load_study
    from trainables.trial import TrialSpec, run_trial
    study = load_study("conf/quick.yaml")
    result = run_trial(TrialSpec("quick", "synthetic", "unet", 0.9, 0), study, work_dir="trial")
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainables.config import StudyConfig
from trainables.data import trial_data
from trainables.evaluate import condition_means, evaluate_conditions
from trainables.guard import hold_trial, set_aside_corrupt_state
from trainables.loop import (
    TrainState,
    compile_with_fallback,
    grad_scaler,
    load_checkpoint,
    pick_device,
    save_checkpoint,
    seed_everything,
    to_memory_format,
    to_tensor,
    train_epoch,
    validation_dice,
)
from trainables.models import build_model
from trainables.precision import resolve_channels_last, resolve_precision
from trainables.schema import (
    BEST_EPOCH,
    BEST_VAL_DICE,
    CHECKPOINT_FOLDER,
    COMPILED_TAG,
    CONFIG_HASH_TAG,
    EPOCH_SECONDS,
    GIT_COMMIT_TAG,
    MEAN_EPOCH_SECONDS,
    PER_IMAGE_ARTIFACT,
    RESUMED_TAG,
    SPLIT_HASH_TAG,
    SPLIT_MANIFEST_ARTIFACT,
    TRAIN_LOSS,
    VAL_DICE,
    resolve_tracking_uri,
)
from trainables.spec import TrialSpec
from trainables.tracking import RetryPolicy, TrialRun, only_our_retries

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


@dataclass(frozen=True)
class EpochReport:
    """What the trial tells its caller after each epoch (the Ray adapter reports it)."""

    epoch: int
    train_loss: float
    val_dice: float | None
    best_val_dice: float
    seconds: float
    checkpoint_dir: Path


@dataclass
class TrialResult:
    """Outcome of a trial."""

    spec: TrialSpec
    run_id: str
    skipped: bool = False
    best_val_dice: float = float("nan")
    best_epoch: int = -1
    test_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def git_commit() -> str:
    """The commit of the code that runs, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def trial_params(config: StudyConfig) -> dict[str, str]:
    """Every training hyper-parameter, as MLflow params."""
    training, model = config.training, config.model
    return {
        "learning_rate": training.learning_rate,
        "batch_size": training.batch_size,
        "epochs": training.epochs,
        "val_every": training.val_every,
        "rotate_prob": training.rotate_prob,
        "dice_threshold": training.dice_threshold,
        "test_checkpoint": training.test_checkpoint,
        "mixed_precision": training.mixed_precision,
        "channels_last": training.channels_last,
        "compile": training.compile,
        "cudnn_benchmark": training.cudnn_benchmark,
        "evaluation_batch_size": training.eval_batch_size,
        "optimizer": "adam",
        "loss": "dice_sigmoid",
        "image_size": config.image_size,
        "data_seed": config.data_seed,
        "channels": list(model.channels),
        "strides": list(model.strides),
        "norm": model.norm,
        "activation": model.activation,
        "unet_plus_plus_features": list(model.unet_plus_plus_features),
        "surface_metrics": config.evaluation.surface_metrics,
    }


def run_trial(
    spec: TrialSpec,
    config: StudyConfig,
    *,
    work_dir: str | Path,
    tracking_uri: str | None = None,
    cache_root: str | Path | None = None,
    resume_from: str | Path | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    device: str | None = None,
    extra_tags: dict[str, str] | None = None,
    threads: int | None = None,
) -> TrialResult:
    """Train, evaluate and track one trial; resume it if a checkpoint exists.

    Args:
        spec: the trial key.
        config: the validated study.
        work_dir: folder for the trial's checkpoint and result files.
        tracking_uri: MLflow URI; default from the study, the environment or ``sqlite:///mlflow.db``.
        cache_root: prepared-data cache; default the study's ``storage.cache``.
        resume_from: a folder holding ``state.pt`` to continue from; default ``work_dir``'s, if any.
        on_epoch: called after each epoch, once its state is saved in ``checkpoint_dir``.
        device: torch device; default CUDA when visible, else CPU.
        extra_tags: more run tags set by the caller (the sweep records the Ray node id).
        threads: torch intra-op threads (the sweep passes the CPUs Ray gave the trial); default: torch's setting.

    Returns:
        The result; ``skipped`` when the trial's run had already FINISHED.

    Raises:
        PrecisionError: fp16 asked for on a CPU, before anything is read, created or logged.
    """
    config = config.for_dataset(spec.dataset)  # the data set's model / training overrides (same config hash)
    torch_device = pick_device(device)
    precision, channels_last = _numerics(config.training, torch_device)
    if threads is not None:
        torch.set_num_threads(threads)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(tracking_uri or config.tracking.uri)
    only_our_retries()
    data = trial_data(config, spec.dataset, spec.train_alpha, cache_root or config.storage.cache)
    tags = {
        **spec.tags(),
        CONFIG_HASH_TAG: config.config_hash(),
        SPLIT_HASH_TAG: data.manifest["hash"],
        GIT_COMMIT_TAG: git_commit(),
        **(extra_tags or {}),
    }
    params = {
        **trial_params(config),
        "precision": precision,  # what ran: fp32, bf16 or fp16 (mixed_precision may say auto)
        "channels_last": channels_last,
        "torch_threads": torch.get_num_threads(),  # results depend on it
    }
    record = TrialRun(
        uri,
        config.experiment_name,
        spec.trial_id,
        spec.run_name,
        tags,
        params,
        system_metrics_seconds=config.tracking.system_metrics_seconds,
        retry_policy=RetryPolicy.from_config(config.tracking),
    )
    with hold_trial(work_dir, spec.run_name), record as run:  # a duplicate of this trial stops before logging
        if run.already_finished:
            log.info("%s: already finished in run %s, skipped", spec.run_name, run.run_id)
            return TrialResult(spec, run.run_id, skipped=True)
        return _train_and_evaluate(spec, config, data, run, work_dir, resume_from, on_epoch, torch_device)


def _numerics(training, device: torch.device) -> tuple[str, bool]:
    """The precision (fp32, bf16, fp16) the trial trains in on ``device``, and whether it runs channels-last."""
    precision = resolve_precision(training.mixed_precision, device)
    return precision, resolve_channels_last(training.channels_last, device, precision)


def _train_and_evaluate(spec, config, data, run, work_dir: Path, resume_from, on_epoch, device) -> TrialResult:
    training = config.training
    amp, channels_last = _numerics(training, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = training.cudnn_benchmark
    generator = seed_everything(spec.seed)
    model = build_model(spec.variant, config.model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=training.learning_rate)
    scaler = grad_scaler(device, amp)
    state, best_model = TrainState(), None
    checkpoint = Path(resume_from or work_dir) / STATE_FILE
    recovered = set_aside_corrupt_state(checkpoint)  # a truncated state.pt: start again from epoch 0
    if recovered:
        run.set_tags({**recovered, RESUMED_TAG: 0})  # epochs already in the run are not logged again
    if checkpoint.is_file():
        state, best_model = load_checkpoint(checkpoint, model, optimizer, generator, scaler)
        log.info("%s: resuming at epoch %d from %s", spec.run_name, state.next_epoch, checkpoint)
        _relog_history(run, state.history)
        run.set_tags({RESUMED_TAG: state.next_epoch})  # the latest resume: where the checkpoint took over
    train_x, train_y = to_tensor(data.train_images, device), to_tensor(data.train_masks, device)
    val_x, val_y = to_tensor(data.val_images, device), to_tensor(data.val_masks, device)
    network = model  # what is called; weights are saved and loaded through ``model``
    if training.compile:
        example = to_memory_format(train_x[: training.batch_size], channels_last)
        network, mode = compile_with_fallback(model, example, amp)
        run.set_tags({COMPILED_TAG: str(mode == "compiled").lower()})
    for epoch in range(state.next_epoch, training.epochs):
        started = time.perf_counter()
        loss = train_epoch(
            network,
            optimizer,
            train_x,
            train_y,
            training.batch_size,
            training.rotate_prob,
            generator,
            amp,
            scaler,
            channels_last,
        )
        val_dice = None
        if (epoch + 1) % training.val_every == 0 or epoch == training.epochs - 1:
            val_dice = validation_dice(  # in fp32, like the test sets: the best epoch is picked on fp32 Dice
                network, val_x, val_y, training.eval_batch_size, training.dice_threshold, channels_last=channels_last
            )
            if val_dice > state.best_val_dice:
                state.best_val_dice, state.best_epoch = val_dice, epoch
                best_model = {key: value.detach().clone() for key, value in model.state_dict().items()}
        seconds = time.perf_counter() - started
        state.history.append({"epoch": epoch, "train_loss": loss, "val_dice": val_dice, "seconds": seconds})
        # Queued, not written: the writer thread logs it while the next epoch trains. A crash before it is
        # written leaves the epoch in the saved history, and a resumed trial logs it again (_relog_history).
        _log_epoch(run, state.history[-1])
        state.next_epoch = epoch + 1
        save_checkpoint(work_dir / STATE_FILE, model, optimizer, generator, state, best_model, scaler)
        if on_epoch is not None:
            on_epoch(EpochReport(epoch, loss, val_dice, state.best_val_dice, seconds, work_dir))
    return _finish(spec, config, data, run, model, network, best_model, state, work_dir, device)


def _log_epoch(run: TrialRun, row: dict) -> None:
    """Log one row of the training history as the run's epoch metrics; steps already in the store are skipped."""
    metrics = {TRAIN_LOSS: row["train_loss"], VAL_DICE: row["val_dice"], EPOCH_SECONDS: row["seconds"]}
    run.log_epoch(row["epoch"], metrics)


def _relog_history(run: TrialRun, history: list[dict]) -> None:
    """Log the epochs of a saved history that the store lacks (their batch was still queued when the trial died)."""
    for row in history:
        _log_epoch(run, row)


def _finish(spec, config, data, run, model, network, best_model, state, work_dir: Path, device) -> TrialResult:
    training = config.training
    checkpoints = work_dir / CHECKPOINT_FOLDER
    checkpoints.mkdir(exist_ok=True)
    last_model = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    best_model = {key: value.cpu() for key, value in (best_model or last_model).items()}
    torch.save(best_model, checkpoints / "best.pt")
    torch.save(last_model, checkpoints / "last.pt")
    model.load_state_dict(best_model if training.test_checkpoint == "best" else last_model)
    per_image = evaluate_conditions(  # in fp32 whatever the training precision: bf16 moves out-of-domain Dice
        network,
        data.conditions,
        config.evaluation,
        device,
        training.eval_batch_size,
        training.dice_threshold,
        channels_last=_numerics(training, device)[1],
    )
    per_image.to_parquet(work_dir / PER_IMAGE_ARTIFACT, index=False)
    (work_dir / SPLIT_MANIFEST_ARTIFACT).write_text(json.dumps(data.manifest, indent=2))
    test_metrics = condition_means(per_image)
    epoch_seconds = [row["seconds"] for row in state.history]
    run.log_metrics(
        {
            BEST_VAL_DICE: state.best_val_dice,
            BEST_EPOCH: state.best_epoch,
            MEAN_EPOCH_SECONDS: float(np.mean(epoch_seconds)) if epoch_seconds else 0.0,
            **test_metrics,
        }
    )
    run.log_artifact(checkpoints / "best.pt", CHECKPOINT_FOLDER)
    run.log_artifact(checkpoints / "last.pt", CHECKPOINT_FOLDER)
    run.log_artifact(work_dir / PER_IMAGE_ARTIFACT)
    run.log_artifact(work_dir / SPLIT_MANIFEST_ARTIFACT)
    log.info(
        "%s: best val Dice %.4f at epoch %d; %s",
        spec.run_name,
        state.best_val_dice,
        state.best_epoch,
        ", ".join(f"{k}={v:.3f}" for k, v in test_metrics.items() if k.startswith("test_dice")),
    )
    return TrialResult(spec, run.run_id, False, state.best_val_dice, state.best_epoch, test_metrics, state.history)
