"""Where a real data set sits on the texture axis: its TS per test level beside the synthetic alpha levels'.

The papers' Fig. 3 idea applied to real data: task difficulty is measured by texture similarity
(TS, KL divergence of LBP histograms between foreground and background, low = hard), so a medical
data set's TS distribution, drawn beside the synthetic levels', says which synthetic level it
resembles. Only TS values are drawn (no image), so the figure of a data set that is not ours can
be shared. The two must be measured alike (same TS settings, same image size):
:func:`comparable_ts` says where they are not.

    python -m trainables.datasets preview --config conf/glas_cpu.yaml --beside conf/miccai2023_cpu.yaml \\
        --out docs/glas_cpu/figures/ts_axis.png
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trainables.config import StudyConfig

SYNTHETIC_COLOUR = "#8c8c8c"
MEDICAL_COLOUR = "#1f77b4"
IN_DOMAIN_COLOUR = "#d62728"
FLOOR = 1e-4  # TS is a KL divergence (>= 0); a log axis needs a floor for the rare exact 0
BEYOND = 1.5  # a median this many times past the outermost synthetic level's is "above" / "below" it


class Distribution(NamedTuple):
    """The per-image TS of one level of one data set."""

    label: str  # "alpha 0.30" or "glas in_domain"
    ts: np.ndarray  # finite values only
    synthetic: bool


def comparable_ts(medical: StudyConfig, synthetic: StudyConfig) -> str | None:
    """Why the two studies' TS values cannot be drawn on one axis (differing settings), or None."""
    ours = medical.texture_similarity.model_dump(mode="json")
    theirs = synthetic.texture_similarity.model_dump(mode="json")
    differing = sorted(key for key in ours if ours[key] != theirs.get(key))
    if differing:
        named = ", ".join(f"{key} {ours[key]!r} vs {theirs.get(key)!r}" for key in differing)
        return f"texture_similarity differs ({named})"
    if medical.image_size != synthetic.image_size:
        return f"image_size differs ({medical.image_size} vs {synthetic.image_size})"
    return None


def distribution(label: str, ts: np.ndarray, synthetic: bool) -> Distribution:
    """A level's TS values with the undefined ones (an image without foreground or background) left out."""
    values = np.asarray(ts, dtype=np.float64)
    return Distribution(label, values[np.isfinite(values)], synthetic)


def nearest_level(target: Distribution, levels: Sequence[Distribution]) -> Distribution:
    """The synthetic level whose median TS is nearest to ``target``'s, on the log scale TS is read on."""
    if not levels:
        raise ValueError("no synthetic levels to compare with")
    median = _log_median(target)
    return min(levels, key=lambda level: abs(_log_median(level) - median))


def placement(target: Distribution, levels: Sequence[Distribution]) -> str:
    """``"~ alpha 0.80"``, or ``"above alpha 0.90"`` / ``"below alpha 0.10"`` where the median lies past every level.

    Past means more than :data:`BEYOND` times the outermost level's median away (TS is a ratio-scale measure).
    """
    near = nearest_level(target, levels)
    gap = _log_median(target) - _log_median(near)
    if abs(gap) <= np.log(BEYOND):
        return f"~ {near.label}"
    side = "above" if gap > 0 else "below"
    outermost = max(levels, key=_log_median) if gap > 0 else min(levels, key=_log_median)
    return f"{side} {near.label}" if near is outermost else f"~ {near.label}"


def _log_median(level: Distribution) -> float:
    return float(np.log(max(float(np.median(level.ts)), FLOOR)))


def placement_lines(medical: Sequence[Distribution], synthetic: Sequence[Distribution]) -> list[str]:
    """One line per medical level: its median TS and where it sits among the synthetic levels."""
    lines = []
    for level in medical:
        near = nearest_level(level, synthetic)
        lines.append(
            f"  {level.label:<24} median TS {np.median(level.ts):.3f}  {placement(level, synthetic)}"
            f" (median {np.median(near.ts):.3f})"
        )
    return lines


def ts_axis_figure(synthetic: Sequence[Distribution], medical: Sequence[Distribution], title: str = "") -> Figure:
    """Horizontal box plots of per-image TS on a log axis: the synthetic levels (grey), then the medical ones.

    Each box carries its median; each medical level is annotated with the synthetic level nearest to it.
    """
    rows = [*synthetic, *medical]
    if not rows:
        raise ValueError("nothing to draw")
    figure = Figure(figsize=(7.5, 0.42 * len(rows) + 1.6))
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    positions = np.arange(len(rows))[::-1]  # the first row on top
    boxes = axis.boxplot(
        [np.maximum(row.ts, FLOOR) for row in rows],
        positions=positions,
        orientation="horizontal",
        widths=0.6,
        showfliers=False,
        patch_artist=True,
        tick_labels=[row.label for row in rows],
    )
    for box, row in zip(boxes["boxes"], rows, strict=True):
        colour = MEDICAL_COLOUR if not row.synthetic else SYNTHETIC_COLOUR
        if not row.synthetic and row.label.endswith("in_domain"):
            colour = IN_DOMAIN_COLOUR
        box.set_facecolor(colour)
        box.set_alpha(0.55)
    for median in boxes["medians"]:
        median.set_color("black")
    axis.set_xscale("log")
    for position, row in zip(positions, rows, strict=True):
        text = f"{np.median(row.ts):.3f}"
        if not row.synthetic and synthetic:
            text += f"  {placement(row, synthetic)}"
        axis.annotate(text, (1.01, position), xycoords=("axes fraction", "data"), va="center", fontsize=7)
    if synthetic and medical:
        axis.axhline(positions[len(synthetic)] + 0.5, color="black", linewidth=0.6, linestyle=":")
    axis.set_xlabel("texture similarity (TS, log scale): low = foreground and background look alike = hard")
    axis.grid(axis="x", alpha=0.3, which="both")
    axis.tick_params(axis="y", labelsize=8)
    axis.set_title(title or "real data on the synthetic texture axis", fontsize=9)
    figure.subplots_adjust(right=0.78)
    return figure
