"""MICCAI 2023 Table 1, cell by cell: the paper's mean (std) beside this study's mean and seed-level interval.

The paper's numbers are means (std) over test images of models trained three times; ours per cell is the mean
over seeds of each model's mean Dice, with a Student-t 95% interval over seeds (df = seeds - 1). Only the
medical data sets of Table 1 (BUSI, spleen, heart) at the harder / in_domain / easier levels are compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.claims.evidence import Evidence
from analysis.claims.paper import TABLE1, TABLE1_DATASETS
from analysis.statistics.seeds import seed_effect

TABLE1_COLUMNS = [
    "dataset",
    "level",
    "variant",
    "paper_mean",
    "paper_std",
    "n_seeds",
    "mean",
    "ci_low",
    "ci_high",
    "difference",
    "paper_inside_ci",
]


def table1_comparison(evidence: Evidence) -> pd.DataFrame:
    """The Table 1 cells this study has, each with the paper's value and ours.

    Args:
        evidence: The study's per-seed scores.

    Returns:
        :data:`TABLE1_COLUMNS`, one row per (data set, level, variant) of Table 1 that the study tested; empty when
        it tested none. ``difference`` is ours minus the paper's; ``paper_inside_ci`` is NaN below 2 seeds.
    """
    scores = evidence.level_scores("dice")
    scores = scores[scores["train_alpha"].isna()]
    rows = []
    for (dataset, level, variant), (paper_mean, paper_std) in TABLE1.items():
        per_seed = scores.loc[
            (scores["dataset"] == dataset) & (scores["level"] == level) & (scores["variant"] == variant), "dice"
        ]
        if per_seed.empty:
            continue
        effect = seed_effect(per_seed)
        inside = bool(effect.ci_low <= paper_mean <= effect.ci_high) if np.isfinite(effect.ci_low) else np.nan
        rows.append(
            {
                "dataset": dataset,
                "level": level,
                "variant": variant,
                "paper_mean": paper_mean,
                "paper_std": paper_std,
                "n_seeds": effect.n_seeds,
                "mean": effect.mean,
                "ci_low": effect.ci_low,
                "ci_high": effect.ci_high,
                "difference": effect.mean - paper_mean,
                "paper_inside_ci": inside,
            }
        )
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def table1_markdown_rows(table: pd.DataFrame) -> list[list[str]]:
    """Rows ``data set | level | variant | paper | ours [95% CI] | ours - paper`` for a Markdown table."""
    rows = []
    for row in table.itertuples(index=False):
        interval = f" [{row.ci_low:.3f}, {row.ci_high:.3f}]" if np.isfinite(row.ci_low) else " (1 seed: no interval)"
        rows.append(
            [
                TABLE1_DATASETS.get(row.dataset, row.dataset),
                row.level,
                row.variant,
                f"{row.paper_mean:.3f} ({row.paper_std:.3f})",
                f"{row.mean:.3f}{interval}",
                f"{row.difference:+.3f}",
            ]
        )
    return rows
