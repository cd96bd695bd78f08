"""A look at a prepared medical data set: slices per split, the test split under each test level, TS per level.

Medical data sets have no alpha levels; their task difficulty is moved at test time by the
study's test levels (:mod:`trainables.datasets.perturb`), so the figure shows those instead of
the synthetic preview's alpha columns. Drawn on matplotlib's Agg canvas, without pyplot.

    python -m trainables.datasets preview --config conf/example_medical_tiny.yaml --dataset spleen --out spleen.png
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure

from trainables.datasets.arrays import TestCondition
from trainables.datasets.medical.prepare import SPLITS, MedicalData


def spread(indices: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` entries of ``indices``, evenly spaced, so that the examples come from different patients."""
    if len(indices) <= count:
        return indices
    return indices[np.round(np.linspace(0, len(indices) - 1, count)).astype(np.int64)]


def medical_preview_figure(
    data: MedicalData, conditions: Sequence[TestCondition], examples: int = 4, title: str = ""
) -> Figure:
    """Example slices of every split and of the test split under every test level, with mask outlines; TS per level.

    Args:
        data: the prepared data set (:func:`trainables.datasets.medical.prepare.load_medical`).
        conditions: its test conditions, one per test level, their images in the order of ``data.indices("test")``
            (as :func:`trainables.datasets.registry.trial_data` returns them).
        examples: slices shown per split and per level.
        title: figure title.

    Returns:
        The figure: a row of slices per split, a column per test level, and a box plot of per-slice TS per level.
    """
    test_shown = spread(np.arange(len(data.indices("test"))), examples)
    level_rows = len(test_shown) if conditions else 0
    columns = max(examples, len(conditions), 3)
    heights = [len(SPLITS), level_rows, 1.6 if conditions else 0]
    figure = Figure(figsize=(1.6 * columns, 1.6 * (len(SPLITS) + level_rows) + (3.6 if conditions else 1.0)))
    FigureCanvasAgg(figure)  # savefig writes PNG or PDF through it
    splits, levels, ts = figure.subfigures(3, 1, squeeze=False, height_ratios=[max(h, 1e-3) for h in heights])[:, 0]
    _draw_splits(splits, data, examples, columns)
    heading = "slices per split (mask outline in red)"
    splits.suptitle(f"{title}\n{heading}" if title else heading, fontsize=9)
    if conditions:
        _draw_levels(levels, conditions, test_shown)
        _draw_ts(ts, conditions)
    return figure


def _show(axis, image: np.ndarray, mask: np.ndarray, vmax: float) -> None:
    axis.imshow(image, cmap="gray", vmin=0, vmax=vmax)
    if mask.any():
        axis.contour(mask, levels=[0.5], colors="red", linewidths=0.6)
    axis.set_xticks([])
    axis.set_yticks([])


def _draw_splits(panel: SubFigure, data: MedicalData, examples: int, columns: int) -> None:
    axes = panel.subplots(len(SPLITS), columns, squeeze=False)
    for row, part in enumerate(SPLITS):
        indices = data.indices(part)
        shown = spread(indices, examples)
        for column, axis in enumerate(axes[row]):
            if column >= len(shown):
                axis.set_axis_off()
                continue
            index = shown[column]
            _show(axis, data.images[index], data.masks[index], 255)
            axis.set_title(f"{data.slice_ids[index]}", fontsize=6)
            if column == 0:
                axis.set_ylabel(f"{part}\n{len(data.split[part])} pat., {len(indices)} sl.", fontsize=7)


def _draw_levels(panel: SubFigure, conditions: Sequence[TestCondition], shown: np.ndarray) -> None:
    axes = panel.subplots(len(shown), len(conditions), squeeze=False)
    for column, condition in enumerate(conditions):
        for row, position in enumerate(shown):
            axis = axes[row, column]
            _show(axis, condition.images[position], condition.masks[position], 1.0)
            axis.text(
                0.02,
                0.02,
                f"TS {condition.ts[position]:.2f}",
                transform=axis.transAxes,
                fontsize=6,
                color="yellow",
                va="bottom",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0},
            )
            if row == 0:
                axis.set_title(condition.name, fontsize=8)
            if column == 0:
                axis.set_ylabel(condition.image_ids[position], fontsize=6)
    panel.suptitle("test split under each test level", fontsize=9)


def _draw_ts(panel: SubFigure, conditions: Sequence[TestCondition]) -> None:
    axis = panel.subplots()
    defined = [condition.ts[~np.isnan(condition.ts)] for condition in conditions]
    axis.boxplot(defined, tick_labels=[condition.name for condition in conditions], showfliers=False)
    axis.set_xlabel("test level (speckle noise lowers TS, background blur raises it)")
    axis.set_ylabel("texture similarity (TS)\nlow = hard")
    axis.grid(axis="y", alpha=0.3)
