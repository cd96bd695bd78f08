"""Do the perturbed test levels change texture similarity the way their names say? (pure pandas)

The papers define "harder" as a perturbation that lowers the texture similarity score TS (higher TS = the
foreground and background textures differ more = easier) and "easier" as one that raises it. Per data set
(and synthetic training alpha), :func:`level_summary` gives mean TS and mean Dice per test level and
whether each level moves TS in its name's direction relative to ``in_domain``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.frames import LEVEL_ORDER, dataset_label, ordered_levels, ordered_variants

EXPECTED_TS = {level: np.sign(i - LEVEL_ORDER.index("in_domain")) for i, level in enumerate(LEVEL_ORDER)}


def level_summary(images: pd.DataFrame) -> pd.DataFrame:
    """Mean TS and Dice per data set x test level, and whether TS moves as the level's name says.

    Args:
        images: Output of :func:`analysis.frames.image_scores`.

    Returns:
        Columns ``label, level, n, mean_ts, mean_dice, <Dice per variant>, ts_change, as_expected``: ``n`` counts
        per-image rows (all variants and seeds), ``ts_change`` is the level's mean TS minus ``in_domain``'s,
        ``as_expected`` is True when harder levels lower TS and easier ones raise it (NaN for ``in_domain``
        and where a mean is missing). Empty when the study has no test levels.
    """
    rows = images[images["condition"].isin(LEVEL_ORDER)]
    if rows.empty:
        return pd.DataFrame(columns=["label", "level", "n", "mean_ts", "mean_dice", "ts_change", "as_expected"])
    variants = ordered_variants(rows["variant"].unique())
    blocks = []
    for (dataset, alpha), block in rows.groupby(["dataset", "train_alpha"], dropna=False, sort=True):
        grouped = block.groupby("condition")
        table = pd.DataFrame(
            {"n": grouped.size(), "mean_ts": grouped["ts"].mean(), "mean_dice": grouped["dice"].mean()}
        )
        per_variant = block.pivot_table(index="condition", columns="variant", values="dice", aggfunc="mean")
        table = table.join(per_variant.reindex(columns=variants)).reindex(ordered_levels(block["condition"].unique()))
        reference = table["mean_ts"].get("in_domain", np.nan)
        table["ts_change"] = table["mean_ts"] - reference
        expected = table.index.map(EXPECTED_TS).to_numpy(dtype="float64")
        observed = np.sign(table["ts_change"].to_numpy(dtype="float64"))
        known = (expected != 0) & np.isfinite(observed)
        table["as_expected"] = pd.Series(np.where(known, observed == expected, None), index=table.index, dtype=object)
        blocks.append(table.rename_axis("level").reset_index().assign(label=dataset_label(dataset, alpha)))
    summary = pd.concat(blocks, ignore_index=True)
    return summary[["label", "level", "n", "mean_ts", "mean_dice", *variants, "ts_change", "as_expected"]]


def level_check_line(summary: pd.DataFrame) -> str:
    """One sentence: does every harder level lower TS and every easier one raise it? Names the failures."""
    checked = summary[summary["as_expected"].notna()]
    if checked.empty:
        return "Check: no test level besides in_domain with a TS to compare."
    failed = checked[~checked["as_expected"].astype(bool)]
    head = (
        f"Check (harder levels lower TS, easier ones raise it, vs in_domain): holds for "
        f"{len(checked) - len(failed)} of {len(checked)} (data set, level) pairs"
    )
    if failed.empty:
        return head + "."
    named = "; ".join(f"{r.label} {r.level} (TS {r.mean_ts:.3g}, {r.ts_change:+.3g})" for r in failed.itertuples())
    return f"{head}; **does not hold** for {named}."
