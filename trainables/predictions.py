"""A small picture of what a trained model predicts: a few fixed test images per test condition, outlined.

Each trial logs ``predictions.png`` (``tracking.prediction_examples`` images per row, 0 = none):
one row per shown condition, each cell the test image in grey with the ground truth outlined in
green and the prediction in magenta, titled with the image's Dice. The same images (evenly spread
over the test split, by position) are shown in every trial of a data set, so the grids of two
variants compare cell by cell. Drawn on matplotlib's Agg canvas, without pyplot, small enough to
keep (a few hundred KB at most, :data:`MAX_BYTES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trainables.datasets.arrays import TestCondition
from trainables.files import replacing
from trainables.schema import IN_DOMAIN

MAX_BYTES = 400_000
TRUTH, PREDICTED = "#2ca02c", "#e377c2"


def shown_conditions(conditions: Sequence[TestCondition], train_alpha: float | None) -> list[TestCondition]:
    """The rows: the hardest and easiest tested alphas and the trial's own, then every test level, in order.

    A medical data set has test levels only (``in_domain`` among them), so all of them are shown.
    """
    alphas = [c for c in conditions if not np.isnan(c.test_alpha)]
    chosen: list[TestCondition] = []
    if alphas:
        by_alpha = sorted(alphas, key=lambda c: c.test_alpha)
        own = [c for c in alphas if train_alpha is not None and np.isclose(c.test_alpha, train_alpha)]
        for condition in (by_alpha[0], *own, by_alpha[-1]):
            if all(condition.name != kept.name for kept in chosen):
                chosen.append(condition)
    levels = [c for c in conditions if np.isnan(c.test_alpha)]
    if chosen:  # a synthetic trial's in_domain level is its own alpha's test set again: shown once
        levels = [c for c in levels if c.name != IN_DOMAIN]
    return [*chosen, *levels]


def example_positions(count: int, examples: int) -> np.ndarray:
    """``examples`` positions evenly spread over a test set of ``count`` images (all of them if fewer)."""
    if count <= examples:
        return np.arange(count)
    return np.round(np.linspace(0, count - 1, examples)).astype(np.int64)


def prediction_figure(
    conditions: Sequence[TestCondition],
    predictions: Sequence[torch.Tensor],
    per_image: pd.DataFrame,
    examples: int,
    title: str,
) -> Figure:
    """The grid: a row per condition, ``examples`` cells each (image, truth and prediction outlines, Dice)."""
    count = min(len(condition.images) for condition in conditions)
    positions = example_positions(count, examples)
    figure = Figure(figsize=(1.25 * len(positions) + 0.6, 1.35 * len(conditions) + 0.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(conditions), len(positions), squeeze=False)
    dice = per_image.set_index(["condition", "image_id"])["dice"]
    for row, (condition, prediction) in enumerate(zip(conditions, predictions, strict=True)):
        for column, position in enumerate(positions):
            axis = axes[row, column]
            axis.imshow(condition.images[position], cmap="gray", vmin=0, vmax=1)
            for mask, colour in ((condition.masks[position], TRUTH), (prediction[position, 0].numpy(), PREDICTED)):
                if mask.any():
                    axis.contour(mask.astype(np.float32), levels=[0.5], colors=colour, linewidths=0.8)
            image_id = condition.image_ids[position]
            axis.set_title(f"Dice {dice.loc[(condition.name, image_id)]:.2f}", fontsize=6, pad=2)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(condition.name, fontsize=7)
    figure.suptitle(f"{title}\ngreen: ground truth, magenta: prediction", fontsize=7)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.02, top=0.9, wspace=0.05, hspace=0.3)
    return figure


def write_predictions(
    path: Path,
    conditions: Sequence[TestCondition],
    predictions: Sequence[torch.Tensor],
    per_image: pd.DataFrame,
    examples: int,
    train_alpha: float | None,
    title: str,
) -> Path | None:
    """Write the grid to ``path`` (PNG, at most :data:`MAX_BYTES`); None when ``examples`` is 0."""
    if examples <= 0 or not conditions:
        return None
    predicted = dict(zip((c.name for c in conditions), predictions, strict=True))
    shown = shown_conditions(conditions, train_alpha)
    figure = prediction_figure(shown, [predicted[c.name] for c in shown], per_image, examples, title)
    for dpi in (100, 72, 50):  # large images or many rows: a coarser picture rather than a large file
        with replacing(path) as temporary:
            figure.savefig(temporary, dpi=dpi, format="png")
        if path.stat().st_size <= MAX_BYTES:
            break
    return path
