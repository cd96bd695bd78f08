"""The MLflow layout of a study, named once: what a trial writes is what ``analysis`` reads.

Standard library only, so that ``analysis`` imports it without torch, Ray or MONAI
(``trainables/__init__.py`` is empty). The MLflow calls themselves live in
``trainables.tracking`` (trials, driver) and ``analysis.export`` (export): both take
their tag and metric names, the default store and the paged run search from here.

    from trainables.schema import KIND_TAG, TRIAL_KIND, kind_filter, search_all_runs
    runs = search_all_runs(MlflowClient(uri), experiment_id, kind_filter(TRIAL_KIND))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The store -----------------------------------------------------------------------------------------------------

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
SEARCH_PAGE_SIZE = 1000  # MLflow's largest page of search_runs

# Tags ------------------------------------------------------------------------------------------------------------

STUDY_TAG = "skipsweep.study"  # on the experiment (found by it when its name differs) and on the report run
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # on the experiment: the UI opens it as model training, not GenAI
MODEL_TRAINING_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # on the experiment: the description the UI shows (the study, how to report it)
FORECAST_TAG = "skipsweep.forecast"  # on the experiment: the saved --calibrate forecast (JSON), set by each run
LEASE_TAG = "skipsweep.driver"  # on the experiment: the driver that owns the study, and until when
KIND_TAG = "skipsweep.kind"  # what a run is: TRIAL_KIND or REPORT_KIND
TRIAL_KIND = "trial"
REPORT_KIND = "report"
TUNING_KIND = "tuning"  # the parent run of one variant's tuning on one data set: the values it chose
TUNING_TRIAL_KIND = "tuning_trial"  # one configuration tried while tuning: a child of its TUNING_KIND run
TUNING_GROUP_TAG = "skipsweep.tuning_group"  # on both: the stable id of (study, data set, variant, search)
TUNE_OUTCOME_TAG = "skipsweep.tune_outcome"  # a tuning trial's end: completed, stopped_early (ASHA) or failed
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's UI nests a run under this one
EPOCHS_TRAINED = "epochs_trained"  # a tuning trial's summary metric: how far it got before it ended or was stopped
TRIAL_ID_TAG = "skipsweep.trial_id"  # the stable id of the trial key: a trial's run is found by it
STATUS_TAG = "skipsweep.status"  # running, finished, failed or killed
STOP_REASON_TAG = "skipsweep.stop_reason"  # why a driver stopped the run (KILLED); removed when the run finishes
RESUMED_TAG = "skipsweep.resumed_at_epoch"  # the epoch the latest resume took over at
COMPILED_TAG = "skipsweep.compiled"  # whether torch.compile ran, when the study asks for it
STATE_RECOVERED_TAG = "skipsweep.state_recovered"  # an unreadable state.pt was set aside (where to)
PARAMS_CHANGED_TAG = "skipsweep.params_changed"  # params a later attempt ran with (MLflow keeps the first)
ERROR_TAG = "error"  # the error of a failed attempt
GPU_UNUSABLE_TAG = "skipsweep.gpu_unusable"  # given a GPU share where CUDA is not usable: trained on the CPU (why)
TUNED_TAG = "skipsweep.tuned"  # the values tuning pinned for the run's variant, and what tuning measured (JSON)
SWEEP_TAG = "skipsweep.sweep"  # the trial's sweep values, JSON {"training.learning_rate": 0.001}; absent without
KEY_TAGS = ("study", "dataset", "variant", "train_alpha", "seed")  # the trial key; train_alpha empty for medical
CONFIG_HASH_TAG = "config_hash"
SPLIT_HASH_TAG = "split_hash"
GIT_COMMIT_TAG = "git_commit"
PROVENANCE_TAGS = (CONFIG_HASH_TAG, SPLIT_HASH_TAG, GIT_COMMIT_TAG)

RUN_COLOUR_TAG = "mlflow.runColor"  # the colour MLflow's UI draws a run in: its variant's, as in the report's figures

# Variants, in the papers' order, and the colour each is drawn in (the report's figures and the MLflow UI)
VARIANT_ORDER = ("noskip_unet", "unet", "attention_unet", "vnet", "noskip_vnet", "unet_plus_plus", "udtransnet")
PALETTE = ("#1b1b1b", "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442")  # Okabe-Ito


def variant_position(variant: str) -> int:
    """A variant's place in :data:`VARIANT_ORDER`; an unknown name gets a stable number of its own."""
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else sum(map(ord, variant))


SKIP_SUBSET_PREFIX = "unet_skips_"  # + one 0/1 per level, shallowest first: unet_skips_0111


def is_skip_subset(variant: str) -> bool:
    """Whether ``variant`` names a U-Net with a subset of its skip connections (``unet_skips_0111``)."""
    flags = variant.removeprefix(SKIP_SUBSET_PREFIX)
    return variant.startswith(SKIP_SUBSET_PREFIX) and bool(flags) and set(flags) <= {"0", "1"}


SUBSET_GRADIENT = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")  # viridis: no skip kept ... all kept


def variant_colour(variant: str) -> str:
    """The colour a variant is drawn in everywhere; a skip subset (``unet_skips_0111``) by its place from none
    kept to all kept on one gradient, so 16 subsets stay apart where the palette's 8 colours would repeat."""
    if is_skip_subset(variant):
        flags = variant.removeprefix(SKIP_SUBSET_PREFIX)
        share = int(flags, 2) / max(2 ** len(flags) - 1, 1)
        return _gradient(SUBSET_GRADIENT, share)
    return PALETTE[variant_position(variant) % len(PALETTE)]


def _gradient(stops: tuple[str, ...], share: float) -> str:
    """The colour at ``share`` (0 to 1) along evenly spaced hex ``stops``, linearly interpolated."""
    position = min(max(share, 0.0), 1.0) * (len(stops) - 1)
    low = min(int(position), len(stops) - 2)
    start, end = (tuple(int(stop[i : i + 2], 16) for i in (1, 3, 5)) for stop in stops[low : low + 2])
    mix = position - low
    return "#" + "".join(f"{round(a + (b - a) * mix):02x}" for a, b in zip(start, end, strict=True))


# Metrics ---------------------------------------------------------------------------------------------------------

TRAIN_LOSS = "train_loss"  # step = epoch
VAL_DICE = "val_dice"  # step = epoch, validation epochs only
EPOCH_SECONDS = "epoch_seconds"  # step = epoch
EPOCH_METRICS = (TRAIN_LOSS, VAL_DICE, EPOCH_SECONDS)
BEST_VAL_DICE = "best_val_dice"
BEST_EPOCH = "best_epoch"
MEAN_EPOCH_SECONDS = "mean_epoch_seconds"
DICE_IN_DOMAIN = "dice_in_domain"  # the test Dice of the trial's own condition (alpha_<train_alpha> or in_domain)
DICE_OUT_OF_DOMAIN = "dice_out_of_domain_mean"  # mean test Dice over every other condition
IN_DOMAIN = "in_domain"  # the test condition of a medical data set's own test images
ALPHA_CONDITION_PREFIX = "alpha_"  # a synthetic test set at one alpha: alpha_0.30

# Artifacts -------------------------------------------------------------------------------------------------------

PER_IMAGE_ARTIFACT = "per_image.parquet"
PREDICTIONS_ARTIFACT = "predictions.png"  # a few fixed test images per condition, outlined (trainables.predictions)
SPLIT_MANIFEST_ARTIFACT = "split_manifest.json"
CHECKPOINT_FOLDER = "checkpoints"


def format_alpha(alpha: float) -> str:
    """Alpha as it appears in names, tags and tables: two decimals unless more are needed (0.30, 0.125).

    Run names, trial ids and ``train_alpha`` tags are made with it: changing it would
    orphan every stored run, so it only ever gains cases.
    """
    text = f"{alpha:.2f}"
    return text if abs(float(text) - alpha) < 1e-9 else f"{alpha:.6g}"


def alpha_condition(alpha: float) -> str:
    """The test condition of the synthetic test set at ``alpha``: ``alpha_0.30``."""
    return f"{ALPHA_CONDITION_PREFIX}{format_alpha(alpha)}"


def in_domain_condition(train_alpha: float | None) -> str:
    """The test condition a trial is tested in-domain on: ``alpha_0.30`` for synthetic data, ``in_domain`` else."""
    return IN_DOMAIN if train_alpha is None else alpha_condition(train_alpha)


def condition_metric(metric: str, condition: str) -> str:
    """The run metric of a per-image metric averaged over one test condition: ``test_dice.alpha_0.30``."""
    return f"test_{metric}.{condition}"


def kind_filter(kind: str) -> str:
    """MLflow's filter string for the runs of one kind (``TRIAL_KIND`` or ``REPORT_KIND``)."""
    return f"tags.`{KIND_TAG}` = '{kind}'"


def resolve_tracking_uri(configured: str | None = None, base: str | Path | None = None) -> str:
    """The tracking URI to use, with a relative SQLite path made absolute.

    Order: ``configured`` (the study file or a command's option), ``$MLFLOW_TRACKING_URI``,
    then ``sqlite:///mlflow.db`` in ``base`` (default: the working directory). Absolute,
    because Ray moves each trial into a folder of its own.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(base or Path.cwd()) / uri[len(prefix) :]
        uri = prefix + str(path.resolve())
    return uri


def search_all_runs(
    client: Any, experiment_id: str, filter_string: str = "", page_size: int = SEARCH_PAGE_SIZE, **options: Any
) -> list:
    """Every run of an experiment that matches ``filter_string``, read page by page.

    Args:
        client: an ``mlflow.MlflowClient`` (passed in: this module does not import MLflow).
        experiment_id: the experiment to search.
        filter_string: MLflow's filter, e.g. :func:`kind_filter`; empty = every active run.
        page_size: runs per call (MLflow answers at most 1000).
        **options: more arguments of ``search_runs``, e.g. ``order_by``.

    Returns:
        The runs of every page, in MLflow's order.
    """
    runs: list = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=page_size, page_token=token, **options
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 04 min``: a wall time as a reader says it (``unknown`` for NaN)."""
    if seconds != seconds:  # NaN: a forecast that lacks the figure
        return "unknown"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
