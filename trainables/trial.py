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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainables.config import StudyConfig
from trainables.datasets.registry import trial_data
from trainables.datasets.synthetic.prepare import train_levels
from trainables.evaluate import condition_means, evaluate_with_predictions
from trainables.guard import hold_trial
from trainables.loop import pick_device
from trainables.predictions import write_predictions
from trainables.runtime import RuntimeOptions
from trainables.schema import (
    BEST_EPOCH,
    BEST_VAL_DICE,
    CHECKPOINT_FOLDER,
    CONFIG_HASH_TAG,
    DICE_IN_DOMAIN,
    DICE_OUT_OF_DOMAIN,
    GIT_COMMIT_TAG,
    IN_DOMAIN,
    MEAN_EPOCH_SECONDS,
    PER_IMAGE_ARTIFACT,
    PREDICTIONS_ARTIFACT,
    RUN_COLOUR_TAG,
    SPLIT_HASH_TAG,
    SPLIT_MANIFEST_ARTIFACT,
    TUNED_TAG,
    condition_metric,
    format_alpha,
    in_domain_condition,
    resolve_tracking_uri,
    variant_colour,
)
from trainables.spec import TrialSpec
from trainables.tracking import RetryPolicy, TrialRun, only_our_retries
from trainables.training import EpochReport, TrainedModel, train_model

log = logging.getLogger(__name__)


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
        "train_range": training.train_range,
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
    extra_params: dict[str, str] | None = None,
) -> TrialResult:
    """Train, evaluate and track one trial; resume it if a checkpoint exists.

    Args:
        spec: the trial key.
        config: the validated study; the trial's data set's ``model`` / ``training`` overrides are applied here.
        work_dir: folder for the trial's checkpoint and result files.
        tracking_uri: MLflow URI; default from the study, the environment or ``sqlite:///mlflow.db``.
        cache_root: prepared-data cache; default the study's ``storage.cache``.
        resume_from: a folder holding an older ``state.pt`` (the sweep passes Ray Tune's checkpoint), used when
            ``work_dir`` has none that loads; a corrupt one is set aside beside ``work_dir``.
        on_epoch: called after each epoch, once its state is saved in ``checkpoint_dir``.
        device: torch device; default CUDA when visible, else CPU.
        extra_tags: more run tags set by the caller (the sweep records the Ray node id).
        extra_params: more run params set by the caller (the sweep records the resources Ray gave the trial).
        threads: torch intra-op threads (the sweep passes the CPUs Ray gave the trial); default: torch's setting.

    Returns:
        The result; ``skipped`` when the trial's run had already FINISHED.

    Raises:
        PrecisionError: fp16 asked for on a CPU, before anything is read, created or logged.
    """
    # The one place a trial applies its data set's model / training overrides and its sweep values (same
    # config hash): every stage below (data, training, evaluation, params) gets this view.
    tuning = config.tuned.get(spec.variant, {}).get(spec.dataset)  # the provenance of its tuned values
    config = config.for_trial(spec.dataset, spec.field_values)
    runtime = RuntimeOptions.for_training(config.training, pick_device(device))
    if threads is not None:
        torch.set_num_threads(threads)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(tracking_uri or config.tracking.uri)
    only_our_retries()
    data = trial_data(config, spec.dataset, spec.train_alpha, cache_root or config.storage.cache)
    tags = {
        **spec.tags(),
        **spec.sweep_tag(),
        **({TUNED_TAG: tuning.model_dump_json()} if tuning is not None and spec.tuned else {}),
        RUN_COLOUR_TAG: variant_colour(spec.variant),  # the UI draws each variant's runs in one colour
        CONFIG_HASH_TAG: config.config_hash(),
        SPLIT_HASH_TAG: data.manifest["hash"],
        GIT_COMMIT_TAG: git_commit(),
        **(extra_tags or {}),
    }
    params = {
        **spec.params(),  # the grid factors: the UI's charts and compare view offer params, not tags
        **trial_params(config),
        "precision": runtime.precision,  # what ran: fp32, bf16 or fp16 (mixed_precision may say auto)
        "channels_last": runtime.channels_last,
        "torch_threads": torch.get_num_threads(),  # results depend on it
        "device": runtime.device.type,  # what it trained on: cpu or cuda (a resume elsewhere: params_changed)
        **_range_params(config, spec),
        **(extra_params or {}),
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
        write_paths=(work_dir,),
        epochs=config.training.epochs,
    )
    with hold_trial(work_dir, spec.run_name), record as run:  # a duplicate of this trial stops before logging
        if run.already_finished:
            log.info("%s: already finished in run %s, skipped", spec.run_name, run.run_id)
            return TrialResult(spec, run.run_id, skipped=True)
        trained = train_model(
            spec, config, data, run, runtime, work_dir=work_dir, resume_from=resume_from, on_epoch=on_epoch
        )
        return _finish(spec, config, data, run, trained, runtime, work_dir)


def _range_params(config: StudyConfig, spec: TrialSpec) -> dict[str, str]:
    """``train_levels``: the alpha levels a synthetic trial with a texture range trains on (none without one)."""
    if spec.train_alpha is None or config.training.train_range == 0:
        return {}
    levels = train_levels(config.datasets.synthetic.alphas, spec.train_alpha, config.training.train_range)
    return {"train_levels": ",".join(format_alpha(alpha) for alpha in levels)}


def domain_dice(test_metrics: dict[str, float], train_alpha: float | None) -> dict[str, float]:
    """The two summary numbers a researcher compares runs by first: in-domain test Dice, and the mean elsewhere.

    ``dice_in_domain`` is the Dice of the trial's own test condition (``alpha_<train_alpha>`` or
    ``in_domain``), ``dice_out_of_domain_mean`` the mean over its other conditions (other alphas, test levels;
    a synthetic trial's ``in_domain`` level is its own alpha's test set again, so it counts as in-domain).
    """
    prefix = condition_metric("dice", "")
    dice = {key.removeprefix(prefix): value for key, value in test_metrics.items() if key.startswith(prefix)}
    own = in_domain_condition(train_alpha)
    others = [value for condition, value in dice.items() if condition not in (own, IN_DOMAIN)]
    summary = {DICE_IN_DOMAIN: dice[own]} if own in dice else {}
    return summary | ({DICE_OUT_OF_DOMAIN: float(np.mean(others))} if others else {})


def _finish(spec, config, data, run, trained: TrainedModel, runtime: RuntimeOptions, work_dir: Path) -> TrialResult:
    """Save the best and last weights, test the chosen one on every condition, log it all; the trial's result."""
    model, state = trained.model, trained.state
    checkpoints = work_dir / CHECKPOINT_FOLDER
    checkpoints.mkdir(exist_ok=True)
    last_model = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    best_model = {key: value.cpu() for key, value in (trained.best_model or last_model).items()}
    torch.save(best_model, checkpoints / "best.pt")
    torch.save(last_model, checkpoints / "last.pt")
    model.load_state_dict(best_model if config.training.test_checkpoint == "best" else last_model)
    # in fp32 whatever the training precision: bf16 moves out-of-domain Dice
    per_image, predictions = evaluate_with_predictions(trained.network, data.conditions, config.evaluation, runtime)
    title = f"{spec.run_name} ({config.training.test_checkpoint} checkpoint)"
    picture = write_predictions(
        work_dir / PREDICTIONS_ARTIFACT,
        data.conditions,
        predictions,
        per_image,
        config.tracking.prediction_examples,
        spec.train_alpha,
        title,
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
            **domain_dice(test_metrics, spec.train_alpha),
            **test_metrics,
        }
    )
    run.log_artifact(checkpoints / "best.pt", CHECKPOINT_FOLDER)
    run.log_artifact(checkpoints / "last.pt", CHECKPOINT_FOLDER)
    run.log_artifact(work_dir / PER_IMAGE_ARTIFACT)
    run.log_artifact(work_dir / SPLIT_MANIFEST_ARTIFACT)
    if picture is not None:
        run.log_artifact(picture)
    log.info(
        "%s: best val Dice %.4f at epoch %d; %s",
        spec.run_name,
        state.best_val_dice,
        state.best_epoch,
        ", ".join(f"{k}={v:.3f}" for k, v in test_metrics.items() if k.startswith("test_dice")),
    )
    return TrialResult(spec, run.run_id, False, state.best_val_dice, state.best_epoch, test_metrics, state.history)
