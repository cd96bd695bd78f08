"""Evaluation of a trained model on every test condition of a trial."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from trainables.config import EvaluationConfig
from trainables.data import TestCondition
from trainables.loop import predict, to_tensor
from trainables.metrics import dice_scores, surface_metrics

PER_IMAGE_COLUMNS = ("condition", "test_alpha", "image_id", "dice", "ts")
SURFACE_COLUMNS = ("hd95", "asd", "nsd")


def evaluate_conditions(
    model: torch.nn.Module,
    conditions: tuple[TestCondition, ...],
    evaluation: EvaluationConfig,
    device: torch.device,
    batch_size: int,
    threshold: float,
    mixed_precision: bool = False,
) -> pd.DataFrame:
    """One row per (condition, image): Dice, TS and, when asked, HD95, ASD and NSD.

    Returns:
        A frame with columns ``condition, test_alpha, image_id, dice, ts`` (+ surface
        metrics), in the order of ``conditions``.
    """
    frames = []
    for condition in conditions:
        prediction = predict(model, to_tensor(condition.images, device), batch_size, threshold, mixed_precision).cpu()
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
    return pd.concat(frames, ignore_index=True)


def condition_means(per_image: pd.DataFrame) -> dict[str, float]:
    """``test_dice.<condition>``, ``test_ts.<condition>`` (and surface metrics) averaged over each condition's images.

    The mean TS per condition lets a user see that a "harder" level really lowers TS on their data.
    """
    metrics = {}
    names = ("dice", "ts") + tuple(c for c in SURFACE_COLUMNS if c in per_image.columns)
    for condition, rows in per_image.groupby("condition", sort=False):
        for name in names:
            metrics[f"test_{name}.{condition}"] = float(rows[name].mean())
    return metrics
