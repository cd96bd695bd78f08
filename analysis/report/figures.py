"""Figures of a study, drawn on matplotlib's Agg canvas (no display, no pyplot state).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save_figure` writes it as
PNG and PDF. Variants keep one marker and one line style in every figure so that the
figures read in grayscale print; NaN values leave gaps or grey cells, never an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from analysis.frames import TESTED_ON, TRAINED_ON, VARIANT_ORDER, format_alpha, ordered_variants

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (7, 2, 1, 2)))
COLOURS = ("#1b1b1b", "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442")


def variant_style(variant: str) -> dict:
    """Marker, line style and colour of a variant, the same in every figure."""
    known = list(VARIANT_ORDER)
    position = known.index(variant) if variant in known else sum(map(ord, variant))
    return {
        "marker": MARKERS[position % len(MARKERS)],
        "linestyle": LINE_STYLES[position % len(LINE_STYLES)],
        "color": COLOURS[position % len(COLOURS)],
    }


def new_figure(n_panels: int = 1, width: float = 5.0, height: float = 4.0) -> tuple[Figure, list]:
    """A figure with ``n_panels`` axes side by side, on an Agg canvas."""
    figure = Figure(figsize=(width * max(n_panels, 1), height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, max(n_panels, 1), squeeze=False)[0]
    return figure, list(axes)


def save_figure(figure: Figure, directory: str | Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` (150 dpi) and ``<stem>.pdf`` into ``directory``.

    Returns:
        The two paths.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.png", folder / f"{stem}.pdf"]
    figure.savefig(paths[0], dpi=150)
    figure.savefig(paths[1], metadata={"CreationDate": None})
    return paths


def plot_relative_improvement(relative: pd.DataFrame, baseline: str) -> Figure:
    """In-domain relative Dice improvement over the baseline against alpha, mean and seed spread.

    Args:
        relative: Output of :func:`analysis.tables.relative.relative_improvement`.
        baseline: The reference variant (drawn as the zero line).

    Returns:
        One panel per synthetic data set.
    """
    datasets = list(dict.fromkeys(relative["dataset"])) or ["(no synthetic runs)"]
    figure, axes = new_figure(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=True):
        block = relative[relative["dataset"] == dataset]
        ax.axhline(0.0, color="0.4", linewidth=1.0, linestyle=":", label=f"{baseline} (baseline)")
        for variant in ordered_variants(block["variant"].unique()):
            line = block[block["variant"] == variant].sort_values("train_alpha")
            x, mean, std = (line[c].to_numpy(dtype="float64") for c in ("train_alpha", "mean", "std"))
            style = variant_style(variant)
            ax.errorbar(
                x, mean, yerr=np.nan_to_num(std), capsize=3, label=f"{variant} (mean ± std over seeds)", **style
            )
            ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.12, linewidth=0)
        alphas = sorted(block["train_alpha"].unique())
        ax.set_xticks(alphas, [format_alpha(alpha) for alpha in alphas])
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_xlabel("alpha (trained and tested on; higher = easier)")
        ax.set_ylabel(f"relative Dice improvement over {baseline}")
        ax.set_title(str(dataset))
        ax.grid(True, color="0.85")
        ax.legend(fontsize=8)
    return figure


def plot_matrix_heatmap(
    matrix: pd.DataFrame,
    title: str,
    diverging: bool = True,
    significant: pd.DataFrame | None = None,
    digits: int = 2,
    colorbar_label: str = "",
) -> Figure:
    """A cross-alpha matrix as a heatmap with its values written in the cells.

    Args:
        matrix: Rows = trained on alpha, columns = tested on alpha.
        title: Figure title.
        diverging: Diverging colour map centred at 0 (differences) instead of a sequential one (raw Dice).
        significant: Same shape, True where the cell survives the Holm correction (text gets a ``*``).
        digits: Decimals of the cell text; a missing cell reads ``NaN``.
        colorbar_label: Label of the colour bar.

    Returns:
        The figure; ``figure.axes[0].texts`` hold the cell texts, row by row.
    """
    values = matrix.to_numpy(dtype="float64")
    finite = values[np.isfinite(values)]
    if diverging:
        limit = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
        norm, cmap = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit), colormaps["RdBu"]
    else:
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        norm, cmap = Normalize(vmin=min(low, 0.0), vmax=max(high, 1.0)), colormaps["viridis"]
    cmap = cmap.with_extremes(bad="0.85")
    side = max(4.0, 0.55 * values.shape[1] + 2.0) if values.size else 4.0
    figure, (ax,) = new_figure(1, width=side, height=max(3.5, 0.5 * values.shape[0] + 1.5))
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    marks = np.zeros(values.shape, dtype=bool)
    if significant is not None:
        aligned = significant.reindex(index=matrix.index, columns=matrix.columns)
        marks = aligned.astype("boolean").fillna(False).to_numpy(dtype=bool)
    fontsize = 9 if values.shape[1] <= 9 else 7
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            value = values[row, column]
            text = f"{value:.{digits}f}" + ("*" if marks[row, column] else "") if np.isfinite(value) else "NaN"
            ax.text(
                column, row, text, ha="center", va="center", fontsize=fontsize, color=_text_colour(cmap, norm, value)
            )
    ax.set_xticks(range(values.shape[1]), [format_alpha(a) for a in matrix.columns])
    ax.set_yticks(range(values.shape[0]), [format_alpha(a) for a in matrix.index])
    ax.set_xlabel(TESTED_ON)
    ax.set_ylabel(TRAINED_ON)
    ax.set_title(
        title + ("\n* differs from the baseline after Holm correction" if significant is not None else ""), fontsize=10
    )
    figure.colorbar(image, ax=ax, label=colorbar_label)
    return figure


def _text_colour(cmap, norm, value: float) -> str:
    if not np.isfinite(value):
        return "black"
    red, green, blue, _ = cmap(norm(value))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def plot_learning_curves(epochs: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Validation Dice against epoch per variant: mean over runs (seeds and alphas) with a std band.

    Args:
        epochs: ``epochs.parquet``.
        runs: ``runs.parquet`` (for each run's data set and variant).

    Returns:
        One panel per data set.
    """
    joined = epochs.merge(runs[["run_id", "dataset", "variant"]], on="run_id").dropna(subset=["val_dice"])
    datasets = sorted(joined["dataset"].unique()) or ["(no validation epochs)"]
    figure, axes = new_figure(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=True):
        block = joined[joined["dataset"] == dataset]
        for variant in ordered_variants(block["variant"].unique()):
            curve = block[block["variant"] == variant].groupby("epoch")["val_dice"].agg(["mean", "std", "count"])
            x, mean, std = curve.index.to_numpy(), curve["mean"].to_numpy(), curve["std"].fillna(0.0).to_numpy()
            style = variant_style(variant)
            ax.plot(x, mean, markevery=max(1, len(x) // 10), label=variant, **style)
            ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.12, linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation Dice (mean ± std over runs)")
        ax.set_title(str(dataset))
        ax.grid(True, color="0.85")
        ax.legend(fontsize=8)
    return figure


def plot_dice_vs_texture(images: pd.DataFrame, n_bins: int = 8) -> Figure:
    """Per-image Dice against the image's texture similarity, with binned means per variant.

    Args:
        images: Output of :func:`analysis.frames.image_scores`.
        n_bins: TS bins (quantiles per data set) of the mean lines.

    Returns:
        One panel per data set.
    """
    points = images.dropna(subset=["ts", "dice"])
    datasets = sorted(points["dataset"].unique()) or ["(no per-image results)"]
    figure, axes = new_figure(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=True):
        block = points[points["dataset"] == dataset]
        edges = np.unique(np.quantile(block["ts"], np.linspace(0.0, 1.0, n_bins + 1))) if len(block) else []
        for variant in ordered_variants(block["variant"].unique()):
            mine = block[block["variant"] == variant]
            style = variant_style(variant)
            ax.scatter(
                mine["ts"], mine["dice"], s=10, alpha=0.35, marker=style["marker"], color=style["color"], linewidths=0
            )
            if len(edges) > 1:
                bins = pd.cut(mine["ts"], edges, include_lowest=True)
                means = mine.groupby(bins, observed=True)[["ts", "dice"]].mean()
                ax.plot(means["ts"], means["dice"], label=f"{variant} (binned mean)", **style)
        ax.set_xlabel("texture similarity TS of the image (higher = easier)")
        ax.set_ylabel("Dice")
        ax.set_title(str(dataset))
        ax.grid(True, color="0.85")
        if len(block):
            ax.legend(fontsize=8)
    return figure
