"""The report's pictures of predictions: what each variant's model predicts at the hardest and easiest task.

The export keeps the ``predictions.png`` of the lowest seed's run per data set, variant and end of the
training-alpha range (:func:`analysis.export.tables.picture_rows`); this section lays them out side by
side, one column per variant, so a Dice that falls to ~0 out of domain can be looked at, not only read.
"""

from __future__ import annotations

import math

from analysis.frames import PREDICTIONS_FOLDER, ordered_variants
from trainables.schema import format_alpha

INTRO = (
    "What the models predict, from each trial's `predictions.png` (fixed test images per test condition, the same "
    "in every trial of a data set: the ground truth outlined in green, the prediction in magenta, each image's "
    "Dice): per variant, its lowest seed's model trained at the lowest and the highest alpha.\n"
)


def predictions_section(pictures: dict[str, dict], folder: str = PREDICTIONS_FOLDER) -> str | None:
    """Markdown with one table per data set (rows: training alpha, columns: variants); None without pictures.

    ``folder`` is where the pictures are, seen from the report (``../../predictions`` for a sweep's slice).
    """
    if not pictures:
        return None
    parts = ["## Predictions\n", INTRO]
    for dataset in sorted({entry["dataset"] for entry in pictures.values()}):
        cells = {
            (_alpha(entry["train_alpha"]), entry["variant"]): name
            for name, entry in pictures.items()
            if entry["dataset"] == dataset
        }
        variants = ordered_variants({variant for _, variant in cells})
        alphas = sorted({alpha for alpha, _ in cells}, key=lambda a: -1.0 if math.isnan(a) else a)
        parts.append(f"### {dataset}\n")
        parts.append("| trained at | " + " | ".join(variants) + " |")
        parts.append("|---" * (len(variants) + 1) + "|")
        for position, alpha in enumerate(alphas):
            label = "its own images" if math.isnan(alpha) else f"alpha {format_alpha(alpha)}"
            if len(alphas) > 1:
                label += " (hardest)" if position == 0 else " (easiest)"
            row = [_image(cells.get((alpha, v)), f"{v}, {label}", folder) for v in variants]
            parts.append(f"| {label} | " + " | ".join(row) + " |")
        parts.append("")
    return "\n".join(parts) + "\n"


def _alpha(value) -> float:
    return math.nan if value is None else float(value)


def _image(name: str | None, caption: str, folder: str) -> str:
    return "-" if name is None else f"![{caption}]({folder}/{name})"
