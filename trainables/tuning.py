"""One configuration tried by the tuning stage: trained and validated, never tested.

A tuning trial is a trial of the study's variant on one data set (at ``tune.train_alpha`` for a
synthetic one) with some study fields set to sampled values, trained for up to ``tune.max_epochs``
with validation after every epoch (the scheduler compares configurations at each rung). It logs to
its own MLflow run, a child of its variant's tuning run, tagged ``skipsweep.kind=tuning_trial`` so
that the study's grid, its export and its view never count it. The test split is never evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainables.config import StudyConfig, stable_hash
from trainables.config.names import axis_text
from trainables.datasets.registry import trial_data
from trainables.guard import hold_trial
from trainables.loop import pick_device
from trainables.runtime import RuntimeOptions
from trainables.schema import (
    BEST_EPOCH,
    BEST_VAL_DICE,
    CONFIG_HASH_TAG,
    EPOCHS_TRAINED,
    GIT_COMMIT_TAG,
    PARENT_RUN_TAG,
    RUN_COLOUR_TAG,
    SPLIT_HASH_TAG,
    TUNE_OUTCOME_TAG,
    TUNING_GROUP_TAG,
    TUNING_TRIAL_KIND,
    resolve_tracking_uri,
    variant_colour,
)
from trainables.spec import TrialSpec
from trainables.tracking import RetryPolicy, TrialRun, only_our_retries
from trainables.training import EpochReport, train_model
from trainables.trial import git_commit, trial_params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuningTrial:
    """One configuration of one tuning: its group (variant, data set, search), and the values it sets."""

    group: str  # the tuning's stable id (orchestrator.tuning.TuningGroup.group_id)
    spec: TrialSpec  # variant, data set, train_alpha, tune.seed; ``axes`` holds the sampled values

    @property
    def trial_id(self) -> str:
        return stable_hash(["tune", self.group, [[key, axis_text(value)] for key, value in self.spec.axes]], 12)

    @property
    def run_name(self) -> str:
        return f"tune {self.spec.run_name}"


@dataclass(frozen=True)
class TuningOutcome:
    run_id: str
    best_val_dice: float
    epochs: int
    stopped_early: bool
    skipped: bool = False


def tuning_view(config: StudyConfig, trial: TuningTrial) -> StudyConfig:
    """The study as a tuning trial trains it: its values set, ``tune.max_epochs`` epochs, validated every epoch."""
    assert config.tune is not None, "a tuning trial needs the study's tune section"
    fields: dict[str, Any] = {
        **trial.spec.axis_values,
        "training.epochs": config.tune.max_epochs,
        "training.val_every": 1,
    }
    return config.for_trial(trial.spec.dataset, fields)


def run_tuning_trial(
    trial: TuningTrial,
    config: StudyConfig,
    *,
    parent_run_id: str,
    work_dir: str | Path,
    tracking_uri: str,
    cache_root: str | Path,
    resume_from: str | Path | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    device: str | None = None,
    extra_tags: dict[str, str] | None = None,
    threads: int | None = None,
) -> TuningOutcome:
    """Train one configuration (no test evaluation) into its MLflow run; resume it when its state is there.

    A stop by Tune's scheduler reaches the trial as ``SystemExit`` from ``tune.report`` inside ``on_epoch``:
    the run then ends FINISHED, tagged ``stopped_early``, with the best validation Dice it reached.
    """
    spec = trial.spec
    view = tuning_view(config, trial)
    runtime = RuntimeOptions.for_training(view.training, pick_device(device))
    if threads is not None:
        torch.set_num_threads(threads)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(tracking_uri)
    only_our_retries()
    data = trial_data(view, spec.dataset, spec.train_alpha, cache_root)
    tags = {
        **spec.tags(),
        PARENT_RUN_TAG: parent_run_id,
        TUNING_GROUP_TAG: trial.group,
        RUN_COLOUR_TAG: variant_colour(spec.variant),
        CONFIG_HASH_TAG: config.config_hash(),
        SPLIT_HASH_TAG: data.manifest["hash"],
        GIT_COMMIT_TAG: git_commit(),
        **(extra_tags or {}),
    }
    params = {**spec.params(), **trial_params(view), "precision": runtime.precision}
    record = TrialRun(
        uri,
        view.experiment_name,
        trial.trial_id,
        trial.run_name,
        tags,
        params,
        retry_policy=RetryPolicy.from_config(view.tracking),
        write_paths=(work_dir,),
        epochs=view.training.epochs,
        kind=TUNING_TRIAL_KIND,
    )
    seen: list[EpochReport] = []

    def each_epoch(epoch: EpochReport) -> None:
        seen.append(epoch)
        if on_epoch is not None:
            on_epoch(epoch)

    with hold_trial(work_dir, trial.run_name), record as run:
        if run.already_finished:
            return TuningOutcome(run.run_id, float("nan"), 0, False, skipped=True)
        try:
            trained = train_model(spec, view, data, run, runtime, work_dir=work_dir, resume_from=resume_from,
                                  on_epoch=each_epoch)  # fmt: skip
            best, best_epoch, epochs = trained.state.best_val_dice, trained.state.best_epoch, len(trained.state.history)
        except SystemExit:  # Tune ended this configuration (ASHA's stop, or its last epoch): what it reached stands
            best = max((epoch.best_val_dice for epoch in seen), default=float("nan"))
            best_epoch = next((e.epoch for e in seen if e.val_dice is not None and e.val_dice == best), -1)
            epochs = seen[-1].epoch + 1 if seen else 0
        stopped = epochs < view.training.epochs
        run.log_metrics({BEST_VAL_DICE: best, BEST_EPOCH: best_epoch, EPOCHS_TRAINED: epochs})
        run.set_tags({TUNE_OUTCOME_TAG: "stopped_early" if stopped else "completed"})
        log.info("%s: best val Dice %.4f after %d epoch(s)%s", trial.run_name, best, epochs,
                 " (stopped early)" if stopped else "")  # fmt: skip
        return TuningOutcome(run.run_id, best, epochs, stopped)
