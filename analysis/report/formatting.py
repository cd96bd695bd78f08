"""Tables as text: Markdown and LaTeX (booktabs) renderings, CSV with labelled axes.

In the out-of-domain tables the best cell of a row is bold (``**...**`` in Markdown,
``\\textbf{...}`` in LaTeX) and a cell whose difference from the baseline survives the Holm
correction carries a dagger (`` †`` in Markdown, ``$^\\dagger$`` in LaTeX). Missing values
are written ``NaN`` and infinite ones ``inf`` or ``-inf``, in tables, CSV files and figure cells alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.frames import INFINITE as INFINITE
from analysis.frames import METRIC_NAMES, TESTED_ON, TRAINED_ON, format_alpha, ordered_variants
from analysis.frames import MISSING as MISSING
from analysis.frames import format_number as format_number
from analysis.tables.ood import METRIC_DIGITS

MATRIX_CORNER = f"{TRAINED_ON} (rows) / {TESTED_ON} (columns)"
DAGGER_MD = " †"
DAGGER_TEX = r"$^\dagger$"


def mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``mean (std)`` as in the papers' tables, e.g. ``0.812 (0.034)``."""
    return f"{format_number(mean, digits)} ({format_number(std, digits)})"


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table.

    Args:
        header: Column titles.
        rows: Cells as strings.
        align: One character per column, ``l`` or ``r`` (default: first column left, others right).

    Returns:
        The table, one line per row, ending with a newline.
    """
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, rule, *rows]]
    return "\n".join(lines) + "\n"


def frame_markdown(frame: pd.DataFrame, digits: int = 3, corner: str | None = None) -> str:
    """A numeric DataFrame (with its index) as a Markdown table.

    Args:
        frame: Table to render; float index/column labels are written as alphas (two decimals).
        digits: Decimals of float cells.
        corner: Title of the index column (default: the index name).

    Returns:
        The Markdown table.
    """
    header = [corner or str(frame.index.name or "")] + [_label(column) for column in frame.columns]
    rows = [
        [_label(index)] + [_cell(value, digits) for value in values]
        for index, values in zip(frame.index, frame.to_numpy().tolist(), strict=True)
    ]
    return markdown_table(header, rows)


def _label(value: object) -> str:
    return format_alpha(value) if isinstance(value, float) else str(value)


def _cell(value: object, digits: int) -> str:
    if value is None or value is pd.NA:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_number(value, digits)
    return str(value)


def write_matrix_csv(matrix: pd.DataFrame, path: str | Path) -> None:
    """Write a cross-alpha matrix with both axes named in words in the header's first cell.

    Missing cells are written ``NaN``, infinite ones ``inf`` / ``-inf`` (as in :func:`format_number`).
    """
    labelled = matrix.copy()
    labelled.index = [format_alpha(alpha) for alpha in matrix.index]
    labelled.columns = [format_alpha(alpha) for alpha in matrix.columns]
    labelled.to_csv(path, index_label=MATRIX_CORNER, float_format="%.6g", na_rep=MISSING)


def _ood_rows(table: pd.DataFrame, metric: str, dagger: str, bold) -> tuple[list[str], list[list[str]]]:
    digits = METRIC_DIGITS.get(metric, 3)
    variants = ordered_variants(table["variant"].unique())
    rows, previous = [], None
    for (label, level), block in table.groupby(["label", "level"], sort=False):
        cells = block.set_index("variant").reindex(variants)
        texts = []
        for variant in variants:
            cell = cells.loc[variant]
            text = mean_std(cell["mean"], cell["std"], digits)
            if "significant" in cells and _flag(cell["significant"]):
                text += dagger
            texts.append(bold(text) if _flag(cell["best"]) else text)
        rows.append(["" if label == previous else str(label), str(level), *texts])
        previous = label
    return variants, rows


def _flag(value: object) -> bool:
    return isinstance(value, bool | np.bool_) and bool(value)


def ood_markdown(table: pd.DataFrame, metric: str = "dice") -> str:
    """Out-of-domain table (:func:`analysis.tables.ood.ood_table`) in Markdown: best per row in bold.

    Args:
        table: Long out-of-domain table.
        metric: Its metric (decides the decimals).

    Returns:
        Markdown with a header ``data set | test level | <variants>``.
    """
    variants, rows = _ood_rows(table, metric, DAGGER_MD, lambda text: f"**{text}**")
    return markdown_table(["data set", "test level", *variants], rows, align="ll" + "r" * len(variants))


def ood_latex(table: pd.DataFrame, metric: str = "dice", caption: str | None = None) -> str:
    """Out-of-domain table in LaTeX (booktabs): best per row in ``\\textbf``.

    Args:
        table: Long out-of-domain table.
        metric: Its metric (decides the decimals and the default caption).
        caption: Table caption.

    Returns:
        A ``table`` environment; needs ``\\usepackage{booktabs}``.
    """
    variants, rows = _ood_rows(table, metric, DAGGER_TEX, lambda text: rf"\textbf{{{text}}}")
    name = METRIC_NAMES.get(metric, metric)
    caption = caption or (
        f"{name}, mean (std) over test images and seeds; best per row in bold; "
        rf"{DAGGER_TEX}: differs from the baseline by a t-test on the seeds, Holm-corrected."
    )
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\begin{{tabular}}{{ll{'c' * len(variants)}}}",
        r"\toprule",
        " & ".join(["data set", "test level", *map(latex_escape, variants)]) + r" \\",
        r"\midrule",
    ]
    for position, row in enumerate(rows):
        if position and row[0]:
            lines.append(r"\midrule")
        lines.append(" & ".join([latex_escape(row[0]), latex_escape(row[1]), *row[2:]]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX specials in plain text (keeps ``$...$`` math written by this module)."""
    if DAGGER_TEX in text:
        head, _, tail = text.partition(DAGGER_TEX)
        return latex_escape(head) + DAGGER_TEX + latex_escape(tail)
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text
