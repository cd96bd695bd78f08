"""The report's section on a tuned study: each variant's tuned values, and what tuning gained over the study's own.

A study resolved by the tuning stage (``python -m orchestrator.run --tune``) trains each variant with its
own values; every run records them (``tuned.<key>`` columns) and what the tuning measured
(``tuning.val_dice``: the chosen configuration's best validation Dice; ``tuning.default_val_dice``: the
study's own values' in the same tuning, same budget, seed and alpha). The gain is their difference: how much
headroom the study's own values left each variant. It is the best of several configurations judged on the
data that chose it, one seed, validation split, so it is biased upwards and is not a test result; the test
results of the grid above are what the variants are compared by.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analysis.frames import TUNED_PREFIX, TUNING_PREFIX, ordered_variants
from analysis.report.formatting import format_number, markdown_table


def tuning_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, variant) of a tuned study: its tuned values, tuned and default validation Dice, gain."""
    values = sorted(column for column in runs.columns if column.startswith(TUNED_PREFIX))
    if not values:
        return pd.DataFrame()
    provenance = [f"{TUNING_PREFIX}{key}" for key in ("val_dice", "default_val_dice", "epochs", "train_alpha", "run")]
    present = [column for column in provenance if column in runs.columns]
    first = runs.groupby(["dataset", "variant"], sort=True)[values + present].first().reset_index()
    table = first.rename(columns=lambda c: c.removeprefix(TUNED_PREFIX) if c in values else c)
    for column in provenance:
        if column not in table:
            table[column] = np.nan
    table["gain"] = table[f"{TUNING_PREFIX}val_dice"].astype(float) - table[f"{TUNING_PREFIX}default_val_dice"].astype(
        float
    )
    order = {variant: index for index, variant in enumerate(ordered_variants(table["variant"].unique()))}
    return table.sort_values(["dataset", "variant"], key=lambda s: s.map(order) if s.name == "variant" else s)


def _shown(value) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:g}"
    if isinstance(value, str) and value.startswith("["):
        return ", ".join(str(item) for item in json.loads(value))
    return str(value)


def tuning_section(writer, runs: pd.DataFrame) -> str:
    """The "Tuning" section and ``tables/tuning.csv`` ("" for a study that was not tuned)."""
    table = tuning_table(runs)
    if table.empty:
        return ""
    link = writer.csv("tuning.csv", table)
    keys = [column for column in table.columns if "." in column and not column.startswith(TUNING_PREFIX)]
    header = ["data set", "variant", *(key.rpartition(".")[2] for key in keys)]
    header += ["tuned val Dice", "study's own values", "gain", "tuning run"]
    rows = []
    for record in table.to_dict("records"):
        rows.append(
            [
                record["dataset"],
                record["variant"],
                *(_shown(record[key]) for key in keys),
                format_number(record[f"{TUNING_PREFIX}val_dice"]),
                format_number(record[f"{TUNING_PREFIX}default_val_dice"]),
                format_number(record["gain"], 3) if np.isfinite(record["gain"]) else "-",
                f"`{record[f'{TUNING_PREFIX}run']}`",
            ]
        )
    differ = [key for key in keys if table.groupby("dataset")[key].nunique().max() > 1]
    if differ:
        named = ", ".join(key.rpartition(".")[2] for key in differ)
        compared = (
            f"The variants were trained at different values of {named}: the comparisons above are between "
            "tuned variants, each at its own best values, not at one shared setting as in the paper."
        )
    else:
        compared = "Tuning chose the same values for every variant: the comparisons above are at one shared setting."
    alphas = sorted(table[f"{TUNING_PREFIX}train_alpha"].dropna().astype(float).unique())
    level = f" (alpha {', '.join(f'{alpha:.2f}' for alpha in alphas)})" if alphas else ""
    intro = (
        "Each variant's values were chosen by the tuning stage (`python -m orchestrator.run --tune`) with the same "
        f"budget for every variant, by best validation Dice on one seed and one training level{level}; the test "
        f"split was never seen. {compared}"
    )
    note = (
        "*Gain*: tuned minus the study's own values in the same tuning. It is the best of several configurations "
        "judged on the data that chose it, so it overstates what a fresh seed would gain; read it as the headroom "
        f"the study's own values left. Table: [{link}]({link})"
    )
    return f"## Tuning\n\n{intro}\n\n{markdown_table(header, rows)}\n{note}\n"
