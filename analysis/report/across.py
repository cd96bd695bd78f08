"""A swept study's report: one full report per slice of the sweep, and whether the papers' verdicts hold across it.

An export that holds several combinations of sweep values (``sweep.<key>`` columns of ``runs.parquet``)
is cut into slices, one per combination; each slice is reported on its own (its baseline is the no-skip
variant at the same values, its seeds are its own models) into ``slices/<values>/``. The top
``report.md`` then answers the reviewer's question, "do the conclusions survive another learning rate?":
one row per (claim, data set, variant), one column per slice, each cell the slice's verdict and its
deciding number, and a last column saying whether the verdict holds across the sweep.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pandas as pd

from analysis.claims import CONTRADICTS, INCONCLUSIVE, SUPPORTS
from analysis.frames import SWEEP_PREFIX, ExportedStudy

SLICES_FOLDER = "slices"


def sweep_axes(runs: pd.DataFrame) -> list[str]:
    """The export's sweep columns, sorted (``sweep.training.learning_rate``)."""
    return sorted(column for column in runs.columns if column.startswith(SWEEP_PREFIX))


def slices(study: ExportedStudy) -> list[tuple[dict[str, object], ExportedStudy]]:
    """The export cut by sweep values: (values by dotted key, the slice's own export), in the values' order.

    An export without a sweep, or with one combination, is one slice.
    """
    axes = sweep_axes(study.runs)
    if not axes:
        return [({}, study)]
    combinations = study.runs[axes].drop_duplicates().sort_values(axes).to_dict("records")
    cut = []
    for combination in combinations:
        chosen = (study.runs[axes] == pd.Series(combination)).all(axis=1)
        runs = study.runs[chosen].reset_index(drop=True)
        ids = set(runs["run_id"])
        cut.append(
            (
                {key.removeprefix(SWEEP_PREFIX): value for key, value in combination.items()},
                replace(
                    study,
                    runs=runs,
                    epochs=study.epochs[study.epochs["run_id"].isin(ids)].reset_index(drop=True),
                    per_image=study.per_image[study.per_image["run_id"].isin(ids)].reset_index(drop=True),
                    pictures={k: v for k, v in study.pictures.items() if v.get("run_id") in ids},
                ),
            )
        )
    return cut


def slice_label(values: dict[str, object]) -> str:
    """``learning_rate=0.001``: each axis by its last name, as run names show it."""
    return " ".join(f"{key.rpartition('.')[2]}={_text(value)}" for key, value in values.items())


def slice_folder(values: dict[str, object]) -> str:
    """The slice's folder under ``slices/``: its label with only file-name-safe characters."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", slice_label(values).replace(" ", "_"))


def holds_across(verdicts: list[pd.DataFrame], labels: list[str]) -> pd.DataFrame:
    """One row per (claim, data set, variant), one column per slice, and whether the verdict holds across them.

    Args:
        verdicts: :func:`analysis.claims.evaluate_claims` of each slice.
        labels: Each slice's label, the column names.

    Returns:
        Columns ``claim``, ``dataset``, ``variant``, one per label (``SUPPORTS (+0.031)``), and ``across``:
        ``holds`` (SUPPORTS in every slice), ``fails`` (CONTRADICTS in every slice), ``depends`` (SUPPORTS
        in some and CONTRADICTS in others: the axis changes the conclusion), ``partly decided`` (one
        direction where decided, INCONCLUSIVE elsewhere) or ``undecided`` (INCONCLUSIVE everywhere). Claims about
        data sets the study does not have (data set ``-``) are left out.
    """
    key = ["claim", "dataset", "variant"]
    cells: dict[tuple, dict[str, str]] = {}
    found: dict[tuple, list[str]] = {}
    for label, table in zip(labels, verdicts, strict=True):
        for row in table.itertuples(index=False):
            unit = (row.claim, row.dataset, row.variant)
            cells.setdefault(unit, {})[label] = _cell(row.verdict, row.value)
            found.setdefault(unit, []).append(row.verdict)
    rows = []
    for unit, by_label in cells.items():
        if unit[1] == "-":
            continue  # the study has no data set the claim is about: nothing to hold or fail across slices
        rows.append(
            {
                **dict(zip(key, unit, strict=True)),
                **{label: by_label.get(label, "-") for label in labels},
                "across": _across(found[unit], len(labels)),
            }
        )
    return pd.DataFrame(rows, columns=[*key, *labels, "across"])


def across_section(table: pd.DataFrame, labels: list[str], folders: list[str], axes: list[str]) -> str:
    """Markdown: the question, the counts, the table with each column linked to its slice's report."""
    named = ", ".join(axis.removeprefix(SWEEP_PREFIX) for axis in axes)
    counts = table["across"].value_counts()
    tally = ", ".join(f"{counts.get(word, 0)} {word}" for word in ("holds", "fails", "depends", "partly decided"))
    lines = [
        f"## Do the verdicts hold across {named}?\n",
        f"Each column is one slice of the sweep, reported on its own (its seeds are its models; the baseline is "
        f"the no-skip variant at the same values): {len(labels)} slices. Per claim, data set and variant: "
        f"{tally}, {counts.get('undecided', 0)} undecided (INCONCLUSIVE in every slice); claims about data sets "
        "this study does not have are left out. "
        "'holds' = SUPPORTS in every slice, 'fails' = CONTRADICTS in every slice, 'depends' = SUPPORTS in one "
        "slice and CONTRADICTS in another (the axis changes the conclusion), 'partly decided' = one direction "
        "where decided and INCONCLUSIVE elsewhere. INCONCLUSIVE is not 'no effect'.\n",
    ]
    links = [f"[{label}]({SLICES_FOLDER}/{folder}/report.md)" for label, folder in zip(labels, folders, strict=True)]
    lines.append("| claim | data set | variant | " + " | ".join(links) + " | across |")
    lines.append("|---" * (len(labels) + 4) + "|")
    for row in table.itertuples(index=False):
        values = list(row)
        lines.append("| " + " | ".join(str(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def _cell(verdict: str, value: float) -> str:
    return verdict if value is None or not math.isfinite(value) else f"{verdict} ({value:+.3g})"


def _across(verdicts: list[str], slices_count: int) -> str:
    decided = {v for v in verdicts if v != INCONCLUSIVE}
    if decided == {SUPPORTS, CONTRADICTS}:
        return "depends"
    if not decided:
        return "undecided"
    whole = len(verdicts) == slices_count and INCONCLUSIVE not in verdicts
    if decided == {SUPPORTS}:
        return "holds" if whole else "partly decided"
    return "fails" if whole else "partly decided"


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) >= 1 else str(value)
    return str(value)
