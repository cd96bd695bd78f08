"""Table 1 style, with the trained model as the unit: each variant's score per test level of a medical data set.

A cell is the mean over seeds of each trained model's mean over the test images, with the Student-t
95% interval over those per-seed means (k - 1 degrees of freedom): the spread a reader should expect
from training again, not the spread over test images that the papers' ``mean (std)`` shows.
"""

from __future__ import annotations

import pandas as pd

from analysis.claims.evidence import Evidence
from analysis.frames import JOURNAL_METRICS, LEVEL_ORDER, LOWER_IS_BETTER, METRIC_NAMES
from analysis.report.formatting import format_number, markdown_table
from analysis.statistics.seeds import seed_effect


def per_level_table(evidence: Evidence, dataset: str, metric: str) -> pd.DataFrame:
    """Rows ``variant, level, n_seeds, mean, ci_low, ci_high, best`` for one medical data set and metric.

    ``best`` marks the variant with the best mean per level (lowest for distances).
    """
    table = evidence.level_table(dataset, metric)
    levels = [level for level in LEVEL_ORDER if level in table.columns]
    rows = []
    for level in levels:
        for variant, scores in table[level].groupby(level="variant"):
            effect = seed_effect(scores.to_numpy())
            rows.append([variant, level, effect.n_seeds, effect.mean, effect.ci_low, effect.ci_high])
    frame = pd.DataFrame(rows, columns=["variant", "level", "n_seeds", "mean", "ci_low", "ci_high"])
    if frame.empty:
        return frame.assign(best=pd.Series(dtype=bool))
    lower = metric in LOWER_IS_BETTER
    best = frame.groupby("level")["mean"].transform("min" if lower else "max")
    return frame.assign(best=frame["mean"] == best)


def per_level_section(writer, evidence: Evidence) -> str:
    """The section: one table per medical data set and metric (Dice, and the surface metrics where measured)."""
    images = evidence.images
    metrics = ["dice", *[m for m in JOURNAL_METRICS if m in images and images[m].notna().any()]]
    parts = []
    for dataset in evidence.level_datasets(medical=True):
        for metric in metrics:
            frame = per_level_table(evidence, dataset, metric)
            if frame.empty:
                continue
            link = writer.csv(f"per_level_{dataset}_{metric}.csv", frame)
            direction = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
            parts.append(f"### {dataset}: {METRIC_NAMES[metric]} ({direction}) ([CSV]({link}))\n\n" + _markdown(frame))
    if not parts:
        return ""
    return (
        "## Per test level, with the trained model as the unit\n\n"
        "Each cell: mean over seeds of each model's mean over the test images, and the 95% t interval over the seeds "
        "(df = seeds - 1). Bold: best mean per level. Overlapping intervals do not show a tie, and separate ones are "
        "not a test; the claims below test the differences seed by seed.\n\n" + "\n".join(parts)
    )


def _markdown(frame: pd.DataFrame) -> str:
    levels = list(dict.fromkeys(frame["level"]))
    variants = sorted(frame["variant"].unique())
    cells = {(row.variant, row.level): row for row in frame.itertuples(index=False)}
    rows = []
    for variant in variants:
        line = [variant]
        for level in levels:
            row = cells.get((variant, level))
            if row is None:
                line.append("")
                continue
            text = f"{format_number(row.mean)} [{format_number(row.ci_low)}, {format_number(row.ci_high)}]"
            line.append(f"**{text}**" if row.best else text)
        rows.append(line)
    seeds = sorted(frame["n_seeds"].unique())
    note = f"\nseeds per cell: {', '.join(map(str, seeds))}\n"
    return markdown_table(["variant", *levels], rows) + note
