"""Figures of a study, drawn on matplotlib's Agg canvas (no display, no pyplot state).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save_figure` writes it as
PNG and PDF. Variants keep one marker and one line style in every figure so that the
figures read in grayscale print; NaN values leave gaps or grey cells, never an error.
A relative-difference cell whose baseline Dice is below :data:`BASELINE_FLOOR`, or whose ratio is
infinite, is drawn grey and hatched with ``n/a`` or ``inf`` and kept out of the colour scale.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, SymLogNorm, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from analysis.frames import (
    ALPHA_DECIMALS,
    BASELINE_FLOOR,
    LEVEL_ORDER,
    TESTED_ON,
    TRAINED_ON,
    format_alpha,
    ordered_variants,
)
from analysis.report.formatting import format_number
from trainables.files import replacing
from trainables.schema import ALPHA_CONDITION_PREFIX, variant_colour, variant_position

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (7, 2, 1, 2)))
COLOUR_PERCENTILE = 95.0  # the diverging colour scale ends at this percentile of |value|; beyond it saturates
LINEAR_RANGE = 0.05  # |relative difference| below this is coloured linearly; above, logarithmically (when the
# scale reaches past 4x this), so gains of a few per cent stay visible beside ratios of 1 or 2 at low baselines
MASKED_TEXT = "n/a"
MASKED_GREY = "0.85"
LEARNING_COLUMNS = 3  # panels per row of the learning-curve grid
IN_DOMAIN = "in_domain"
ALL_CONDITIONS = "all conditions"
MAX_GAP_BINS = 2.0  # a binned-mean line breaks where consecutive points lie farther apart than this many bins


def variant_style(variant: str) -> dict:
    """Marker, line style and colour of a variant, the same in every figure."""
    position = variant_position(variant)
    return {
        "marker": MARKERS[position % len(MARKERS)],
        "linestyle": LINE_STYLES[position % len(LINE_STYLES)],
        "color": variant_colour(variant),  # the colour of the variant's runs in the MLflow UI too
    }


def new_figure(n_panels: int = 1, width: float = 5.0, height: float = 4.0) -> tuple[Figure, list]:
    """A figure with ``n_panels`` axes side by side, on an Agg canvas."""
    figure = Figure(figsize=(width * max(n_panels, 1), height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, max(n_panels, 1), squeeze=False)[0]
    return figure, list(axes)


def new_grid(
    cells: list[tuple[int, int]],
    width: float,
    height: float,
    sharex: bool = False,
    sharey: bool = False,
) -> tuple[Figure, list]:
    """A figure with one axes at each (row, column) of ``cells``; the other grid positions stay empty.

    Tick labels of shared axes are shown on every panel with no panel below (x) or to its left (y).

    Args:
        cells: Grid positions of the panels, in the order the axes are returned.
        width: Width of one panel (inches).
        height: Height of one panel (inches).
        sharex: Share the x axis across all panels.
        sharey: Share the y axis across all panels.

    Returns:
        The figure and its axes, one per cell.
    """
    cells = cells or [(0, 0)]
    rows, columns = max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False, sharex=sharex, sharey=sharey)
    kept = set(cells)
    for (row, column), ax in np.ndenumerate(grid):
        if (row, column) not in kept:
            ax.remove()
    for row, column in cells:
        if (row + 1, column) not in kept:
            grid[row, column].xaxis.set_tick_params(labelbottom=True)
        if (row, column - 1) not in kept:
            grid[row, column].yaxis.set_tick_params(labelleft=True)
    return figure, [grid[row, column] for row, column in cells]


LEGEND_ENTRY_INCHES = (0.55, 0.065)  # at fontsize 8: marker, padding, and about this much per character


def figure_legend(figure: Figure, axes: list) -> None:
    """One legend for the whole figure below the panels, one entry per label found in ``axes``; at most 4 columns,
    and no more than the figure's width holds (16 skip subsets on a one-panel-wide figure: 2)."""
    entries: dict[str, object] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        for handle, label in zip(handles, labels, strict=True):
            entries.setdefault(label, handle)
    if entries:
        fixed, per_character = LEGEND_ENTRY_INCHES
        entry = fixed + per_character * max(len(label) for label in entries)
        columns = max(1, min(len(entries), 4, int(figure.get_figwidth() // entry)))
        figure.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=columns, fontsize=8)


def save_figure(figure: Figure, directory: str | Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` (150 dpi) and ``<stem>.pdf`` into ``directory``, each replaced whole or not at all.

    Returns:
        The two paths.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.png", folder / f"{stem}.pdf"]
    with replacing(paths[0]) as temporary:
        figure.savefig(temporary, dpi=150, format="png")
    with replacing(paths[1]) as temporary:
        figure.savefig(temporary, metadata={"CreationDate": None}, format="pdf")
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


def below_floor(matrix: pd.DataFrame, baseline: pd.DataFrame | None, floor: float = BASELINE_FLOOR) -> np.ndarray:
    """True where the baseline's Dice (aligned to ``matrix``) is known and below ``floor``.

    Args:
        matrix: A relative-difference matrix.
        baseline: The baseline's Dice matrix (same axes); None masks nothing.
        floor: Lowest baseline Dice whose ratio is shown.

    Returns:
        A boolean array of ``matrix``'s shape.
    """
    if baseline is None:
        return np.zeros(matrix.shape, dtype=bool)
    aligned = baseline.reindex(index=matrix.index, columns=matrix.columns).to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        return np.isfinite(aligned) & (aligned < floor)


def diverging_limit(values: np.ndarray) -> tuple[float, str]:
    """Half-range of a colour scale centred at 0, and the colour bar's ``extend``.

    The limit is the :data:`COLOUR_PERCENTILE` percentile of |value| over the finite values, so that a
    few extreme cells saturate instead of washing out the rest; 1.0 when there is nothing to scale.

    Returns:
        ``(limit, extend)``: ``extend`` is ``"both"`` when some value lies beyond the limit, else ``"neither"``.
    """
    magnitudes = np.abs(values[np.isfinite(values)])
    if not magnitudes.size or magnitudes.max() <= 0:
        return 1.0, "neither"
    limit = float(np.percentile(magnitudes, COLOUR_PERCENTILE))
    limit = limit if limit > 0 else float(magnitudes.max())
    return limit, "both" if magnitudes.max() > limit else "neither"


def plot_matrix_heatmap(
    matrix: pd.DataFrame,
    title: str,
    diverging: bool = True,
    significant: pd.DataFrame | None = None,
    digits: int = 2,
    colorbar_label: str = "",
    baseline: pd.DataFrame | None = None,
    floor: float = BASELINE_FLOOR,
) -> Figure:
    """A cross-alpha matrix as a heatmap with its values written in the cells.

    A cell is masked (grey, hatched, left out of the colour scale) when its value is infinite (text
    ``inf``/``-inf``) or when ``baseline`` holds a Dice below ``floor`` there (text ``n/a``); the title
    then says so. A missing cell is grey without hatching and reads ``NaN``.

    Args:
        matrix: Rows = trained on alpha, columns = tested on alpha.
        title: Figure title.
        diverging: Diverging colour map centred at 0 (differences) instead of a sequential one (raw Dice).
            Its symmetric limits are the 95th percentile of |value| over the unmasked cells; past
            4 x :data:`LINEAR_RANGE` the scale is symmetric-logarithmic beyond +-:data:`LINEAR_RANGE`.
        significant: Same shape, True where the cell survives the Holm correction (text gets a ``*``).
        digits: Decimals of the cell text.
        colorbar_label: Label of the colour bar.
        baseline: The baseline variant's Dice matrix (mean over seeds) behind a relative ``matrix``.
        floor: Lowest baseline Dice whose relative difference is drawn.

    Returns:
        The figure; ``figure.axes[0].texts`` hold the cell texts, row by row.
    """
    values = matrix.to_numpy(dtype="float64")
    infinite, low = np.isinf(values), below_floor(matrix, baseline, floor)  # 0/0 there too: n/a, not NaN
    masked = infinite | low
    shown = np.where(masked, np.nan, values)
    extend = "neither"
    if diverging:
        limit, extend = diverging_limit(shown)
        norm = (
            SymLogNorm(linthresh=LINEAR_RANGE, linscale=1.0, vmin=-limit, vmax=limit, base=10)
            if limit > 4 * LINEAR_RANGE
            else TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
        )
        cmap = colormaps["RdBu"]
    else:
        finite = shown[np.isfinite(shown)]
        low_value, high_value = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        norm, cmap = Normalize(vmin=min(low_value, 0.0), vmax=max(high_value, 1.0)), colormaps["viridis"]
    cmap = cmap.with_extremes(bad=MASKED_GREY)
    side = max(4.0, 0.55 * values.shape[1] + 2.0) if values.size else 4.0
    figure, (ax,) = new_figure(1, width=side, height=max(3.5, 0.5 * values.shape[0] + 1.5))
    image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, aspect="auto")
    _hatch_cells(ax, masked)
    marks = _significance_marks(matrix, significant)
    fontsize = 9 if values.shape[1] <= 9 else 7
    for (row, column), value in np.ndenumerate(values):
        if masked[row, column]:
            text, colour = (format_number(value) if infinite[row, column] else MASKED_TEXT), "black"
        else:
            text = format_number(value, digits) + ("*" if marks[row, column] and np.isfinite(value) else "")
            colour = _text_colour(cmap, norm, value)
        ax.text(column, row, text, ha="center", va="center", fontsize=fontsize, color=colour)
    ax.set_xticks(range(values.shape[1]), [format_alpha(a) for a in matrix.columns])
    ax.set_yticks(range(values.shape[0]), [format_alpha(a) for a in matrix.index])
    ax.set_xlabel(TESTED_ON)
    ax.set_ylabel(TRAINED_ON)
    notes = _heatmap_notes(significant is not None, low.any(), infinite.any(), floor)
    ax.set_title("\n".join([title, *notes]), fontsize=10)
    bar = figure.colorbar(image, ax=ax, label=colorbar_label, extend=extend)
    if isinstance(norm, SymLogNorm):  # decades as per cent: -100%, -10%, -1%, 0, 1%, 10%, 100%
        decades = [10.0**k for k in range(-2, 3) if 10.0**k <= norm.vmax]
        bar.set_ticks([-d for d in reversed(decades)] + [0.0] + decades)
        bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    return figure


def _significance_marks(matrix: pd.DataFrame, significant: pd.DataFrame | None) -> np.ndarray:
    if significant is None:
        return np.zeros(matrix.shape, dtype=bool)
    aligned = significant.reindex(index=matrix.index, columns=matrix.columns)
    return aligned.astype("boolean").fillna(False).to_numpy(dtype=bool)


def _hatch_cells(ax, masked: np.ndarray) -> None:
    """Grey hatched squares over the masked cells (their colour would mean nothing)."""
    for row, column in zip(*np.nonzero(masked), strict=True):
        ax.add_patch(
            Rectangle(
                (column - 0.5, row - 0.5), 1.0, 1.0, facecolor=MASKED_GREY, edgecolor="0.6", hatch="///", linewidth=0
            )
        )


def _heatmap_notes(significance: bool, low: bool, infinite: bool, floor: float) -> list[str]:
    notes = ["* differs from the baseline (t-test on seeds, Holm)"] if significance else []
    if low:
        notes.append(f"grey hatched n/a: baseline Dice < {floor:.2f}, ratio not shown")
    if infinite:
        notes.append("grey hatched inf: baseline Dice 0 (infinite ratio)")
    return notes


def _text_colour(cmap, norm, value: float) -> str:
    if not np.isfinite(value):
        return "black"
    red, green, blue, _ = cmap(norm(value))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def _with_run_keys(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs``' run_id, dataset, variant, train_alpha (NaN when absent) and seed (one seed when absent)."""
    keys = runs[["run_id", "dataset", "variant"]].copy()
    keys["train_alpha"] = runs["train_alpha"].astype("float64") if "train_alpha" in runs else np.nan
    keys["seed"] = runs.get("seed", 0)
    return keys


def panel_title(dataset: str, train_alpha: float) -> str:
    """``synthetic, alpha 0.30`` for a synthetic training level, ``busi`` for a medical data set."""
    return str(dataset) if pd.isna(train_alpha) else f"{dataset}, alpha {format_alpha(train_alpha)}"


def seed_curves(block: pd.DataFrame) -> pd.DataFrame:
    """Validation Dice per epoch of one variant: mean and std (ddof=1) over seeds.

    Args:
        block: Epoch rows of one (data set, training alpha, variant), with a ``seed`` column.

    Returns:
        Indexed by epoch: ``mean``, ``std`` (0 where one seed has the epoch), ``low`` and ``high``
        (mean -/+ std, clipped to [0, 1]).
    """
    per_seed = block.groupby(["seed", "epoch"])["val_dice"].mean()
    curve = per_seed.groupby(level="epoch").agg(["mean", "std"])
    curve["std"] = curve["std"].fillna(0.0)
    curve["low"] = (curve["mean"] - curve["std"]).clip(0.0, 1.0)
    curve["high"] = (curve["mean"] + curve["std"]).clip(0.0, 1.0)
    return curve


def plot_learning_curves(epochs: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Validation Dice against epoch: one panel per (data set, training alpha), mean and std over seeds.

    Each panel draws each variant's mean over seeds with a band of +/- one std over seeds, clipped to
    Dice's range [0, 1]. A medical data set (no training alpha) has one panel. Panels share both axes
    and sit in a grid of up to :data:`LEARNING_COLUMNS` columns; one legend serves the figure.

    Args:
        epochs: ``epochs.parquet``.
        runs: ``runs.parquet`` (each run's data set, variant, training alpha and seed; a missing
            ``train_alpha`` column counts as NaN, a missing ``seed`` column as one seed).

    Returns:
        The figure, one axes per panel.
    """
    joined = epochs.merge(_with_run_keys(runs), on="run_id").dropna(subset=["val_dice"])
    panels = learning_panels(joined)
    cells = learning_cells(panels)
    figure, axes = new_grid(cells, width=3.6, height=2.8, sharex=True, sharey=True)
    for ax, (dataset, alpha) in zip(axes, panels, strict=False):
        block = joined[(joined["dataset"] == dataset) & _same_alpha(joined["train_alpha"], alpha)]
        for variant in ordered_variants(block["variant"].unique()):
            curve = seed_curves(block[block["variant"] == variant])
            x, style = curve.index.to_numpy(), variant_style(variant)
            ax.plot(x, curve["mean"].to_numpy(), markevery=max(1, len(x) // 10), label=variant, **style)
            ax.fill_between(x, curve["low"], curve["high"], color=style["color"], alpha=0.15, linewidth=0)
        ax.set_title(panel_title(dataset, alpha), fontsize=10)
    axis = ("epoch", "validation Dice", (0.0, 1.0))
    title = "Validation Dice per epoch: mean and std over seeds, per training alpha"
    if cells and max(column for _, column in cells) < 2:  # one or two panels wide: the title would be cut
        title = title.replace(": ", ":\n")
    return _finish_grid(figure, axes, cells, axis, title if panels else "", "(no validation epochs)")


def learning_panels(joined: pd.DataFrame) -> list[tuple[str, float]]:
    """The (data set, training alpha) pairs present, in panel order.

    Synthetic pairs come first, by data set and rising alpha, then the medical data sets (alpha NaN).
    """
    pairs = joined[["dataset", "train_alpha"]].drop_duplicates()
    keys = {(str(dataset), float(alpha)) for dataset, alpha in pairs.itertuples(index=False) if not pd.isna(alpha)}
    keys |= {(str(dataset), math.nan) for dataset in pairs.loc[pairs["train_alpha"].isna(), "dataset"].unique()}
    return sorted(keys, key=lambda key: (math.isnan(key[1]), key[0], 0.0 if math.isnan(key[1]) else key[1]))


def learning_cells(panels: list[tuple[str, float]]) -> list[tuple[int, int]]:
    """Grid positions (row, column) of the learning-curve panels.

    Each synthetic data set, and the medical ones together, start a new row of at most
    :data:`LEARNING_COLUMNS` panels.
    """
    cells, row, column, previous = [], -1, LEARNING_COLUMNS, None
    for dataset, alpha in panels:
        block = "(medical)" if math.isnan(alpha) else dataset
        if column == LEARNING_COLUMNS or block != previous:
            row, column = row + 1, 0
        cells.append((row, column))
        column, previous = column + 1, block
    return cells or [(0, 0)]


def _same_alpha(alphas: pd.Series, alpha: float) -> pd.Series:
    return alphas.isna() if math.isnan(alpha) else alphas.round(ALPHA_DECIMALS) == round(alpha, ALPHA_DECIMALS)


def _label_edges(ax, cell: tuple[int, int], cells: list[tuple[int, int]], xlabel: str, ylabel: str) -> None:
    """Axis labels only on panels with no panel below (x) or to the left (y)."""
    row, column = cell
    if (row + 1, column) not in cells:
        ax.set_xlabel(xlabel)
    if (row, column - 1) not in cells:
        ax.set_ylabel(ylabel)


def condition_groups(images: pd.DataFrame) -> pd.Series:
    """The Dice-vs-TS panel of each per-image row: a test level, ``in_domain``, or None (left out).

    A synthetic cross-alpha row tested on the alpha it was trained on is ``in_domain``; one tested on
    another alpha is left out (the cross-alpha matrices show those). A data set with such rows leaves
    out its ``in_domain`` test-level rows too: they are the same unchanged images. Without a
    ``condition`` column every row is in one group.

    Args:
        images: Per-image rows.

    Returns:
        The group of each row (index of ``images``).
    """
    if "condition" not in images:
        return pd.Series(ALL_CONDITIONS, index=images.index, dtype=object)
    condition = images["condition"].astype(str)
    trained, tested = (_alphas(images, column) for column in ("train_alpha", "test_alpha"))
    is_alpha = condition.str.startswith(ALPHA_CONDITION_PREFIX)
    diagonal = is_alpha & (trained == tested)
    groups = condition.where(~is_alpha, None).where(~diagonal, IN_DOMAIN)
    has_diagonal = images.loc[diagonal, "dataset"].unique()
    repeated = ~is_alpha & (condition == IN_DOMAIN) & images["dataset"].isin(has_diagonal)
    return groups.where(~repeated, None)


def _alphas(images: pd.DataFrame, column: str) -> pd.Series:
    """An alpha column rounded for matching; NaN where the frame has no such column."""
    if column not in images:
        return pd.Series(np.nan, index=images.index)
    return images[column].astype("float64").round(ALPHA_DECIMALS)


def group_title(dataset: str, group: str, synthetic: bool) -> str:
    """Panel title of a data set's condition group."""
    if group == IN_DOMAIN and synthetic:
        return f"{dataset}: in_domain (tested on its training alpha)"
    return f"{dataset}: {group}"


def binned_means(ts: pd.Series, dice: pd.Series, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean TS and mean Dice per TS bin, as a line that never spans an empty TS range.

    Only bins holding points give a point; a NaN separates two points when a bin between them is
    empty or when they lie more than :data:`MAX_GAP_BINS` bin widths apart, so the line breaks there.

    Args:
        ts: Texture similarity of each point.
        dice: Dice of each point.
        edges: Increasing bin edges (equal widths); a single edge puts every point in one bin.

    Returns:
        ``(x, y)`` ready for ``ax.plot``.
    """
    frame = pd.DataFrame({"ts": ts.to_numpy(dtype="float64"), "dice": dice.to_numpy(dtype="float64")}).dropna()
    if frame.empty:
        return np.array([]), np.array([])
    if len(edges) < 2:
        return np.array([frame["ts"].mean()]), np.array([frame["dice"].mean()])
    width = float(edges[1] - edges[0])
    index = np.clip(np.searchsorted(edges, frame["ts"].to_numpy(), side="right") - 1, 0, len(edges) - 2)
    means = frame.groupby(index)[["ts", "dice"]].mean()
    x, y, previous = [], [], None
    for position, row in means.iterrows():
        if previous is not None and (position - previous[0] > 1 or row["ts"] - previous[1] > MAX_GAP_BINS * width):
            x.append(np.nan)
            y.append(np.nan)
        x.append(row["ts"])
        y.append(row["dice"])
        previous = (position, row["ts"])
    return np.array(x), np.array(y)


def ts_edges(ts: pd.Series, n_bins: int) -> np.ndarray:
    """``n_bins`` equal-width bins over the TS range of a panel (one edge when the range is a point)."""
    values = ts.dropna().to_numpy(dtype="float64")
    if not values.size:
        return np.array([])
    low, high = float(values.min()), float(values.max())
    return np.array([low]) if high <= low else np.linspace(low, high, max(n_bins, 1) + 1)


def _texture_panels(points: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Data sets (rows) and condition groups (columns, hardest first) of the Dice-vs-TS grid."""
    datasets = sorted(points["dataset"].unique())
    present = set(points["group"])
    known = [group for group in (*LEVEL_ORDER, ALL_CONDITIONS) if group in present]
    return datasets, known + sorted(present - set(known))


def plot_dice_vs_texture(images: pd.DataFrame, n_bins: int = 8) -> Figure:
    """Per-image Dice against the image's texture similarity, with binned means per variant.

    One row of panels per data set and one panel per test condition group (see
    :func:`condition_groups`): a synthetic data set's in-domain cross-alpha rows in one panel and each
    test level in its own; a medical data set's test levels each in their own. The binned means use
    ``n_bins`` equal-width TS bins per panel and break wherever the TS range holds no points.

    Args:
        images: Output of :func:`analysis.frames.image_scores`.
        n_bins: TS bins per panel of the mean lines.

    Returns:
        The figure, one axes per (data set, condition group), titled ``<data set>: <group>``.
    """
    points = images.dropna(subset=["ts", "dice"])
    points = points.assign(group=condition_groups(points)).dropna(subset=["group"])
    datasets, groups = _texture_panels(points)
    panels = [(d, g) for d in datasets for g in groups if ((points["dataset"] == d) & (points["group"] == g)).any()]
    cells = [(datasets.index(d), groups.index(g)) for d, g in panels] or [(0, 0)]
    figure, axes = new_grid(cells, width=4.0, height=3.3, sharey=True)
    for ax, (dataset, group) in zip(axes, panels, strict=False):
        block = points[(points["dataset"] == dataset) & (points["group"] == group)]
        _draw_texture_panel(ax, block, ts_edges(block["ts"], n_bins))
        synthetic = "train_alpha" in block and block["train_alpha"].notna().any()
        ax.set_title(group_title(dataset, group, synthetic), fontsize=10)
    axis = ("texture similarity TS (higher = easier)", "Dice", (-0.02, 1.02))
    title = "Per-image Dice against texture similarity; lines: mean per TS bin holding images"
    return _finish_grid(figure, axes, cells, axis, title if panels else "", "(no per-image results)")


def _finish_grid(figure: Figure, axes: list, cells: list, axis: tuple, title: str, empty: str) -> Figure:
    """Label the outer edges of a panel grid, fix its y range, grid lines, title and one legend.

    ``axis`` is ``(x label, y label, (y low, y high))``; an empty ``title`` means there was nothing to draw, and
    the first panel then says ``empty``.
    """
    xlabel, ylabel, ylim = axis
    for ax, cell in zip(axes, cells, strict=True):
        _label_edges(ax, cell, cells, xlabel, ylabel)
        ax.set_ylim(*ylim)
        ax.grid(True, color="0.85")
    if title:
        figure.suptitle(title, fontsize=11)
    else:
        axes[0].set_title(empty, fontsize=10)
    figure_legend(figure, axes)
    return figure


def _draw_texture_panel(ax, block: pd.DataFrame, edges: np.ndarray) -> None:
    for variant in ordered_variants(block["variant"].unique()):
        mine = block[block["variant"] == variant]
        style = variant_style(variant)
        ax.scatter(mine["ts"], mine["dice"], s=8, alpha=0.3, marker=style["marker"], color=style["color"], linewidths=0)
        x, y = binned_means(mine["ts"], mine["dice"], edges)
        ax.plot(x, y, label=f"{variant} (binned mean)", markersize=5, **style)
