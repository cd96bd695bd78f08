"""Do the perturbed test levels change texture similarity the way their names say? (pure pandas)

The papers define "harder" as a perturbation that lowers the texture similarity score TS (higher TS = the
foreground and background textures differ more = easier) and "easier" as one that raises it. Per data set
(and synthetic training alpha), :func:`level_summary` gives mean TS and mean Dice per test level, whether
each level moves TS in its name's direction relative to ``in_domain``, and how far it moves mean Dice.
A level's name promises a Dice direction too (harder lowers Dice, easier raises it):
:func:`level_dice_line` states each level's Dice change and names the levels that move it against their name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.frames import LEVEL_ORDER, dataset_label, ordered_levels, ordered_variants

EXPECTED_TS = {level: np.sign(i - LEVEL_ORDER.index("in_domain")) for i, level in enumerate(LEVEL_ORDER)}
SUMMARY_HEAD = ["label", "level", "n", "mean_ts", "mean_dice"]  # then the mean Dice of each variant
SUMMARY_TAIL = ["ts_change", "as_expected", "dice_change"]
BLOCKS = "(data set, alpha) blocks"


def level_summary(images: pd.DataFrame) -> pd.DataFrame:
    """Mean TS and Dice per data set x test level, whether TS moves as the level's name says, and the Dice change.

    Args:
        images: Output of :func:`analysis.frames.image_scores`.

    Returns:
        Columns ``label, level, n, mean_ts, mean_dice, <Dice per variant>, ts_change, as_expected, dice_change``:
        ``n`` counts per-image rows (all variants and seeds), ``ts_change`` is the level's mean TS minus
        ``in_domain``'s, ``as_expected`` is True when harder levels lower TS and easier ones raise it (NaN for
        ``in_domain`` and where a mean is missing), ``dice_change`` is the level's mean Dice minus the same
        label's ``in_domain`` mean Dice (NaN without one). Empty when the study has no test levels.
    """
    rows = images[images["condition"].isin(LEVEL_ORDER)]
    if rows.empty:
        return pd.DataFrame(columns=[*SUMMARY_HEAD, *SUMMARY_TAIL])
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
        table["dice_change"] = table["mean_dice"] - table["mean_dice"].get("in_domain", np.nan)
        blocks.append(table.rename_axis("level").reset_index().assign(label=dataset_label(dataset, alpha)))
    summary = pd.concat(blocks, ignore_index=True)
    return summary[[*SUMMARY_HEAD, *variants, *SUMMARY_TAIL]]


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


def dice_against_name(summary: pd.DataFrame) -> pd.Series:
    """True where a level moves mean Dice against its name: a harder level raises it, an easier one lowers it.

    Args:
        summary: Output of :func:`level_summary`.

    Returns:
        Booleans aligned with ``summary``; False for ``in_domain`` and where ``dice_change`` is missing or 0.
    """
    expected = summary["level"].map(EXPECTED_TS).to_numpy(dtype="float64")
    observed = np.sign(summary["dice_change"].to_numpy(dtype="float64"))
    return pd.Series((expected != 0) & (observed == -expected), index=summary.index)


def level_dice_line(summary: pd.DataFrame) -> str:
    """One sentence: each level's Dice change vs in_domain, naming the levels that move Dice against their name.

    Args:
        summary: Output of :func:`level_summary`.

    Returns:
        E.g. ``Dice vs in_domain (...): harder -0.55 (mean over 6 (data set, alpha) blocks, from -0.62 to
        -0.43); easier -0.45 (...). Against its name: easier lowers mean Dice at 6 of 6 (data set, alpha)
        blocks (synthetic (alpha 0.90): 0.97 -> 0.49, ...).``
    """
    changed = summary[(summary["level"] != "in_domain") & summary["dice_change"].notna()]
    if changed.empty:
        return "Dice: no test level besides in_domain with a Dice to compare."
    levels = ordered_levels(changed["level"].unique())
    parts = [_level_change(level, changed[changed["level"] == level]) for level in levels]
    head = "Dice vs in_domain (the level's mean Dice minus in_domain's): " + "; ".join(parts) + "."
    against = changed[dice_against_name(changed)]
    if against.empty:
        return f"{head} No level moves Dice against its name."
    named = [
        _against(level, against[against["level"] == level], changed[changed["level"] == level], summary)
        for level in ordered_levels(against["level"].unique())
    ]
    return f"{head} **Against its name**: {'; '.join(named)}."


def _level_change(level: str, block: pd.DataFrame) -> str:
    changes = block["dice_change"]
    if len(changes) == 1:
        return f"{level} {changes.iloc[0]:+.2f} ({block['label'].iloc[0]})"
    return (
        f"{level} {changes.mean():+.2f} (mean over {len(changes)} {BLOCKS}, "
        f"from {changes.min():+.2f} to {changes.max():+.2f})"
    )


def _against(level: str, failed: pd.DataFrame, checked: pd.DataFrame, summary: pd.DataFrame) -> str:
    verb = "raises" if EXPECTED_TS[level] < 0 else "lowers"
    reference = summary[summary["level"] == "in_domain"].set_index("label")["mean_dice"]
    cases = ", ".join(f"{r.label}: {reference[r.label]:.2f} -> {r.mean_dice:.2f}" for r in failed.itertuples())
    return f"{level} {verb} mean Dice at {len(failed)} of {len(checked)} {BLOCKS} ({cases})"
