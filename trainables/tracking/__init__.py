"""Every MLflow call of a trial lives in this package: one experiment per study, one run per trial key.

The layout that ``analysis`` reads (README "MLflow layout"; the names live in ``trainables.schema``):

- run name ``variant/dataset[/a0.30]/s1``; tags for every key field (``study``,
  ``dataset``, ``variant``, ``train_alpha``, ``seed``), ``skipsweep.kind=trial``,
  ``skipsweep.trial_id``, ``config_hash``, ``split_hash``, ``git_commit``,
  ``skipsweep.status``, ``skipsweep.compiled`` (whether ``torch.compile`` ran, when
  the study asks for it) and, on failure, ``error``;
- params: every training hyper-parameter;
- metrics: ``train_loss``, ``val_dice``, ``epoch_seconds`` at step = epoch;
  ``best_val_dice``, ``best_epoch``; ``test_dice.<condition>`` (and ``test_hd95``,
  ``test_asd``, ``test_nsd`` when the study asks); MLflow's system metrics
  (``system/cpu_utilization_percentage``, ``system/system_memory_usage_megabytes``,
  ``system/gpu_*`` with nvidia-ml-py) every ``tracking.system_metrics_seconds``;
- artifacts: ``checkpoints/best.pt``, ``checkpoints/last.pt``, ``per_image.parquet``,
  ``split_manifest.json``; ``failed_attempts/<UTC time>.txt``, the traceback of each failed attempt.

A trial is found again by its ``skipsweep.trial_id`` tag: a rerun of a finished
trial is skipped, an interrupted one continues in the same run, and an epoch that
was already logged is never logged again.

One module per job:

- ``retry``: the retry policy (the study's ``tracking.retries`` and ``tracking.retry_wait``)
  and ``with_retries``, which every call goes through;
- ``writer``: the background thread that sends a run's epoch metrics in batches;
- ``run``: ``TrialRun``, the lifecycle of one trial's run (create or resume, params,
  tags, epochs, summaries, artifacts, FINISHED or FAILED);
- ``system_metrics``: MLflow's CPU, memory and GPU monitor for one run;
- ``store``: queries and updates over a study's experiment (open the store and create it, finished trial
  ids, runs a stopped driver leaves unfinished, one summary row per trial);
- ``view``: the study's view in MLflow's UI (its charts and columns), an experiment tag the driver sets.

Tag and metric names come from ``trainables.schema``.
"""

from __future__ import annotations

from trainables.schema import STOP_REASON_TAG
from trainables.tracking.retry import DEFAULT_RETRY_POLICY, RetryPolicy, only_our_retries, with_retries
from trainables.tracking.run import TrialRun
from trainables.tracking.store import (
    ForeignExperimentError,
    StoreBusyError,
    UnusableStoreError,
    ensure_experiment,
    explain_unusable,
    find_trial_run,
    finished_trial_ids,
    mark_interrupted,
    open_experiment,
    trial_summaries,
)
from trainables.tracking.writer import MetricsNotLoggedError, MetricWriter

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "STOP_REASON_TAG",  # the schema's name, imported from here by callers that also stop runs
    "MetricWriter",
    "MetricsNotLoggedError",
    "RetryPolicy",
    "StoreBusyError",
    "TrialRun",
    "UnusableStoreError",
    "ForeignExperimentError",
    "ensure_experiment",
    "explain_unusable",
    "find_trial_run",
    "finished_trial_ids",
    "mark_interrupted",
    "only_our_retries",
    "open_experiment",
    "trial_summaries",
    "with_retries",
]
