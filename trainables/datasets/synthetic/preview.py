"""A look at the synthetic data, like Fig. 2 of the paper: examples per level and TS per level.

Drawn on matplotlib's Agg canvas, without pyplot: no display, no backend chosen for the process.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trainables.datasets.synthetic.prepare import SyntheticData
from trainables.schema import format_alpha


def preview_figure(data: SyntheticData, examples: int = 3, title: str = "") -> Figure:
    """Example test images at every alpha level with their mask outlines, and TS per level.

    Args:
        data: the prepared synthetic data set.
        examples: how many test images to show per level (rows).
        title: figure title.

    Returns:
        The figure; the bottom panel is a box plot of per-image TS against alpha.
    """
    levels = len(data.alphas)
    shown = data.split["test"][:examples]
    figure = Figure(figsize=(1.6 * max(levels, 4), 1.6 * len(shown) + 3.0))
    FigureCanvasAgg(figure)  # savefig writes PNG or PDF through it
    grid = figure.add_gridspec(len(shown) + 1, levels, height_ratios=[1] * len(shown) + [1.6])
    for column, alpha in enumerate(data.alphas):
        for row, index in enumerate(shown):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(data.images[column, index], cmap="gray", vmin=0, vmax=255)
            axis.contour(data.masks[index], levels=[0.5], colors="red", linewidths=0.6)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"alpha {format_alpha(alpha)}", fontsize=8)
            if column == 0:
                axis.set_ylabel(data.image_ids[index], fontsize=7)
    axis = figure.add_subplot(grid[-1, :])
    defined = [values[~np.isnan(values)] for values in data.ts]
    axis.boxplot(defined, tick_labels=[format_alpha(a) for a in data.alphas], showfliers=False)
    axis.set_xlabel("alpha (share of foreground texture inside the mask; 1 = easiest)")
    axis.set_ylabel("texture similarity (TS)\nlow = hard")
    axis.grid(axis="y", alpha=0.3)
    if title:
        figure.suptitle(title)
    return figure
