"""One tuning (a variant on a data set) as a Ray Tune run: a search algorithm and the ASHA scheduler.

With ``orchestrator.sweep`` the only modules that import Ray Tune. The search space is the study's
``tune.space`` in Tune's own terms (``tune.uniform``, ``tune.loguniform``, ``tune.choice``; a choice's
values travel as their JSON text, which Optuna's categorical distributions accept whatever the value);
Tune's ``OptunaSearch`` proposes configurations (its ``BasicVariantGenerator`` draws them at random
when Optuna is not installed or the study asks for random search), and ``ASHAScheduler`` stops the
poor ones at its rungs. The metric is each configuration's best validation Dice so far.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from orchestrator.sweep import SweepPaths, _node_tags, _tune_checkpoint, fit_quietly
from orchestrator.tuning import search_algorithm_name
from trainables.config import StudyConfig
from trainables.config.tuning import SearchRange

METRIC = "best_val_dice"
SIGNIFICANT_DIGITS = 3  # a sampled number is rounded to this many: the value trained, logged and pinned


@dataclass(frozen=True)
class TriedConfiguration:
    """What Tune reports of one configuration once the tuning has ended."""

    values: dict[str, Any]
    best_val_dice: float | None
    epochs: int
    failed: bool


def rounded(value: Any) -> Any:
    """A sampled number at :data:`SIGNIFICANT_DIGITS` significant digits (other values unchanged)."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return value


def search_algorithm(tuning, points: list[dict]):
    """Tune's search algorithm for ``tune.search``: OptunaSearch, or its random search; ``points`` tried first."""
    if search_algorithm_name(tuning) == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per study created: noise here
        return OptunaSearch(points_to_evaluate=points or None, seed=tuning.seed)
    return tune.search.BasicVariantGenerator(points_to_evaluate=points or None, random_state=tuning.seed)


def _domain(search: SearchRange):
    if search.uniform is not None:
        return tune.uniform(*search.uniform)
    if search.loguniform is not None:
        return tune.loguniform(*search.loguniform)
    return tune.choice([json.dumps(value) for value in search.choice])


def sampled_values(config: dict, space: dict[str, SearchRange]) -> dict[str, Any]:
    """The study-field values of one Tune configuration (choices decoded, numbers rounded)."""
    return {
        key: json.loads(config[key]) if search.choice is not None else rounded(float(config[key]))
        for key, search in space.items()
    }


def as_tune_point(values: dict[str, Any], space: dict[str, SearchRange]) -> dict[str, Any]:
    """Study-field values as a configuration of Tune's search space (``points_to_evaluate``)."""
    return {key: json.dumps(values[key]) if search.choice is not None else values[key] for key, search in space.items()}


def _tuning_trainable(
    config: dict,
    *,
    study: StudyConfig,
    group: str,
    dataset: str,
    variant: str,
    train_alpha: float | None,
    parent_run_id: str,
    paths: SweepPaths,
    device: str | None,
) -> None:
    """One configuration in a Ray worker: trained with a report (and a checkpoint) after each epoch."""
    from trainables.spec import TrialSpec
    from trainables.state import STATE_FILE
    from trainables.tuning import TuningTrial, run_tuning_trial

    assert study.tune is not None
    values = sampled_values(config, study.tune.space)
    spec = TrialSpec(study.study, dataset, variant, train_alpha, study.tune.seed, tuple(values.items()))
    trial = TuningTrial(group, spec)
    work_dir = Path(paths.storage_path) / study.study / "tuning-work" / trial.trial_id
    if "://" in paths.storage_path:
        work_dir = Path(tempfile.mkdtemp(prefix=f"skipsweep-tune-{trial.trial_id}-"))

    def report(epoch) -> None:
        metrics = {METRIC: epoch.best_val_dice, "epoch": epoch.epoch, "train_loss": epoch.train_loss}
        if epoch.val_dice is not None:
            metrics["val_dice"] = epoch.val_dice
        with tempfile.TemporaryDirectory() as folder:  # ASHA may pause nothing, but a retried trial resumes
            shutil.copy(epoch.checkpoint_dir / STATE_FILE, Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    with _tune_checkpoint() as tune_state:
        run_tuning_trial(
            trial,
            study,
            parent_run_id=parent_run_id,
            work_dir=work_dir,
            tracking_uri=paths.tracking_uri,
            cache_root=paths.cache_root,
            resume_from=tune_state,
            on_epoch=report,
            device=device,
            extra_tags=_node_tags(),
            threads=max(1, round(study.resources.cpu)),
        )
    shutil.rmtree(work_dir, ignore_errors=True)


def run_tuning(
    study: StudyConfig,
    *,
    group: str,
    dataset: str,
    variant: str,
    train_alpha: float | None,
    defaults: dict[str, Any] | None,
    parent_run_id: str,
    paths: SweepPaths,
    gpu_per_trial: float,
    verbose: bool = False,
) -> list[TriedConfiguration]:
    """Run (or resume) one tuning on the connected Ray cluster; every configuration Tune tried.

    ``defaults`` (the study's own values, or None) is tried first. Tune's experiment is kept under
    ``<storage>/<study>/tuning/<group>``: a tuning that was interrupted resumes there, with the search
    algorithm's state, its finished configurations kept and its unfinished ones resumed from their checkpoints.
    """
    tuning = study.tune
    assert tuning is not None
    device = "cpu" if gpu_per_trial == 0 else None
    trainable = tune.with_resources(
        tune.with_parameters(
            _tuning_trainable,
            study=study,
            group=group,
            dataset=dataset,
            variant=variant,
            train_alpha=train_alpha,
            parent_run_id=parent_run_id,
            paths=paths,
            device=device,
        ),
        {"cpu": study.resources.cpu, "gpu": gpu_per_trial},
    )
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C stops the driver (orchestrator.interrupts), not Tune
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    experiment = Path(paths.storage_path) / study.study / "tuning"
    if "://" not in paths.storage_path and tune.Tuner.can_restore(str(experiment / group)):
        tuner = tune.Tuner.restore(str(experiment / group), trainable, resume_unfinished=True, resume_errored=True)
    else:
        points = [as_tune_point(defaults, tuning.space)] if defaults is not None else []
        searcher = search_algorithm(tuning, points)
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=tuning.max_epochs,
            grace_period=tuning.grace_epochs,
            reduction_factor=tuning.reduction_factor,
        )
        tuner = tune.Tuner(
            trainable,
            param_space={key: _domain(search) for key, search in tuning.space.items()},
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="max",
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=tuning.samples,
                max_concurrent_trials=tuning.max_concurrent_trials,
            ),
            run_config=tune.RunConfig(
                name=group,
                storage_path=str(experiment) if "://" not in paths.storage_path else paths.storage_path,
                failure_config=tune.FailureConfig(max_failures=study.resources.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=2 if verbose else 0,
            ),
        )
    results = fit_quietly(tuner, verbose)
    tried = []
    for result in results:
        if not result.config:
            continue
        metrics = result.metrics or {}
        best = metrics.get(METRIC)
        tried.append(
            TriedConfiguration(
                values=sampled_values(result.config, tuning.space),
                best_val_dice=None if best is None or best < 0 else float(best),
                epochs=int(metrics.get("training_iteration", 0)),
                failed=result.error is not None,
            )
        )
    return tried
