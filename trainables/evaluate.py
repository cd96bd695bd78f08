"""Evaluation of a trained model on every test condition of a trial."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from trainables.config import EvaluationConfig
from trainables.datasets.arrays import TestCondition
from trainables.loop import predict, to_tensor
from trainables.metrics import dice_scores, surface_metrics
from trainables.runtime import RuntimeOptions
from trainables.schema import condition_metric

PER_IMAGE_COLUMNS = ("condition", "test_alpha", "image_id", "dice", "ts")
SURFACE_COLUMNS = ("hd95", "asd", "nsd")


def evaluate_conditions(
    model: torch.nn.Module,
    conditions: tuple[TestCondition, ...],
    evaluation: EvaluationConfig,
    runtime: RuntimeOptions,
) -> pd.DataFrame:
    """One row per (condition, image): Dice, TS and, when asked, HD95, ASD and NSD.

    The images of all conditions are predicted as one stream, ``runtime.eval_batch_size``
    at a time, so a trial with many small test sets runs a few full batches instead of a
    short pass per condition; the per-image results are the same either way. Predictions
    are fp32 whatever ``runtime.precision`` (bf16 moves out-of-domain Dice).

    Returns:
        A frame with columns ``condition, test_alpha, image_id, dice, ts`` (+ surface
        metrics), in the order of ``conditions``.
    """
    return evaluate_with_predictions(model, conditions, evaluation, runtime)[0]


def evaluate_with_predictions(
    model: torch.nn.Module,
    conditions: tuple[TestCondition, ...],
    evaluation: EvaluationConfig,
    runtime: RuntimeOptions,
) -> tuple[pd.DataFrame, list[torch.Tensor]]:
    """:func:`evaluate_conditions`' frame, and the binary predictions it scored: one (n, 1, H, W) tensor each."""
    predictions = predict_images([condition.images for condition in conditions], model, runtime)
    frames = []
    for condition, prediction in zip(conditions, predictions, strict=True):
        target = torch.from_numpy(condition.masks.astype(np.float32))[:, None]
        frame = pd.DataFrame(
            {
                "condition": condition.name,
                "test_alpha": float(condition.test_alpha),
                "image_id": list(condition.image_ids),
                "dice": dice_scores(prediction, target).numpy().astype(np.float64),
                "ts": np.asarray(condition.ts, dtype=np.float64),
            }
        )
        if evaluation.surface_metrics:
            rows = [
                surface_metrics(p[0].numpy(), t[0].numpy(), evaluation.hausdorff_percentile, evaluation.nsd_tolerance)
                for p, t in zip(prediction, target, strict=True)
            ]
            for column in SURFACE_COLUMNS:
                frame[column] = [row[column] for row in rows]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), predictions


def predict_images(image_sets: list[np.ndarray], model: torch.nn.Module, runtime: RuntimeOptions) -> list[torch.Tensor]:
    """Binary predictions of several (n_i, H, W) image sets, in batches that run across set borders.

    The sets stay on the CPU; :func:`~trainables.loop.predict` moves one batch at a time to ``runtime.device``.

    Returns:
        One (n_i, 1, H, W) boolean CPU tensor per set.
    """
    stream = to_tensor(np.concatenate(image_sets), torch.device("cpu"))
    return list(predict(model, stream, runtime).split([len(images) for images in image_sets]))


def condition_means(per_image: pd.DataFrame) -> dict[str, float]:
    """``test_dice.<condition>``, ``test_ts.<condition>`` (and surface metrics) averaged over each condition's images.

    The mean TS per condition lets a user see that a "harder" level really lowers TS on their data.
    """
    metrics = {}
    names = ("dice", "ts") + tuple(c for c in SURFACE_COLUMNS if c in per_image.columns)
    for condition, rows in per_image.groupby("condition", sort=False):
        for name in names:
            metrics[condition_metric(name, condition)] = float(rows[name].mean())
    return metrics
