"""The report's data sections: in-domain relative improvement, cross-alpha matrices, out-of-domain tables,
robustness ranking and test levels. Each writes its figures and tables through the report's writer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.claims.evidence import Evidence
from analysis.frames import JOURNAL_METRICS, LOWER_IS_BETTER, METRIC_NAMES, cross_alpha_rows
from analysis.report import figures
from analysis.report.formatting import (
    MATRIX_CORNER,
    format_number,
    frame_markdown,
    markdown_table,
    mean_std,
    ood_latex,
    ood_markdown,
    write_matrix_csv,
)
from analysis.report.notes import CROSS_ALPHA_NOTE
from analysis.report.writer import Writer
from analysis.tables.levels import dice_against_name, level_check_line, level_dice_line, level_summary
from analysis.tables.ood import rank_groups, rank_variants, robustness_cov
from analysis.tables.relative import dice_matrix, relative_improvement, relative_matrix


def synthetic_sections(writer: Writer, evidence: Evidence, baseline: str) -> None:
    if cross_alpha_rows(evidence.images).empty:
        return
    scores = evidence.scores("dice")
    relative = relative_improvement(scores, baseline)
    writer.text("## In-domain relative improvement (synthetic)\n")
    writer.figure(
        figures.plot_relative_improvement(relative, baseline),
        "relative_improvement",
        f"(Dice - Dice of {baseline}) / Dice of {baseline} on the in-domain test set; bars: std over seeds",
    )
    link = writer.csv("relative_improvement.csv", relative)
    shown = relative.assign(cell=[mean_std(m, s) for m, s in zip(relative["mean"], relative["std"], strict=True)])
    for dataset, block in shown.groupby("dataset", sort=False):
        wide = block.pivot(index="train_alpha", columns="variant", values="cell")
        wide.index.name = "trained and tested on alpha"
        writer.text(
            f"**{dataset}**: relative improvement, mean (std) over seeds ([CSV]({link}))\n\n" + frame_markdown(wide)
        )
    writer.text("## Cross-alpha robustness matrices (synthetic)\n\n" + CROSS_ALPHA_NOTE)
    for dataset in sorted(scores["dataset"].unique()):
        for variant in scores.loc[scores["dataset"] == dataset, "variant"].unique():
            raw = dice_matrix(scores, dataset, variant)
            raw_link = writer.table_file(
                f"dice_matrix_{dataset}_{variant}.csv", lambda p, m=raw: write_matrix_csv(m, p)
            )
            writer.figure(
                figures.plot_matrix_heatmap(
                    raw, f"{variant}: Dice ({dataset})", diverging=False, colorbar_label="Dice"
                ),
                f"dice_matrix_{dataset}_{variant}",
                f"Dice of {variant}, mean over seeds ({dataset})",
            )
            writer.text(f"Dice of {variant} ([CSV]({raw_link})):\n\n" + frame_markdown(raw, corner=MATRIX_CORNER))
            if variant == baseline:
                continue
            matrix = relative_matrix(scores, dataset, variant, baseline)
            reference = dice_matrix(scores, dataset, baseline)
            tests = evidence.matrix(dataset, variant, baseline, "dice")
            marks = tests.pivot(index="train_alpha", columns="test_alpha", values="significant")
            link = writer.table_file(
                f"relative_matrix_{dataset}_{variant}.csv", lambda p, m=matrix: write_matrix_csv(m, p)
            )
            tests_link = writer.csv(f"tests_matrix_{dataset}_{variant}.csv", tests)
            writer.figure(
                figures.plot_matrix_heatmap(
                    matrix,
                    f"{variant} vs {baseline}: relative Dice ({dataset})",
                    significant=marks,
                    colorbar_label="relative Dice difference",
                    baseline=reference,
                ),
                f"relative_matrix_{dataset}_{variant}",
                f"(Dice {variant} - Dice {baseline}) / Dice {baseline}, mean over seeds ({dataset})",
            )
            writer.text(
                f"Relative difference of {variant} vs {baseline} ([CSV]({link}), "
                f"[seed-level tests]({tests_link})):\n\n" + relative_markdown(matrix, reference, baseline)
            )


def relative_markdown(matrix: pd.DataFrame, reference: pd.DataFrame, baseline: str) -> str:
    """A relative-difference matrix as Markdown, cells over a baseline Dice below the floor shown as n/a.

    The figure hides the same cells (:func:`analysis.report.figures.plot_matrix_heatmap`); the CSV keeps
    their numbers. Infinite cells read ``inf``, missing ones ``NaN``.

    Args:
        matrix: Output of :func:`analysis.tables.relative.relative_matrix`.
        reference: The baseline's Dice matrix (:func:`analysis.tables.relative.dice_matrix`).
        baseline: The baseline variant's name.

    Returns:
        The table, followed by a note on the floor when it hides a cell and on inf when a cell is infinite.
    """
    floor = figures.BASELINE_FLOOR
    values = matrix.to_numpy(dtype="float64")
    hidden = figures.below_floor(matrix, reference, floor) & ~np.isinf(values)
    table = frame_markdown(matrix.astype(object).mask(hidden, f"n/a (baseline < {floor:.2f})"), corner=MATRIX_CORNER)
    notes = []
    if hidden.any():
        notes.append(
            f"n/a: {baseline}'s mean Dice over seeds in that cell is below {floor:.2f}, so the ratio divides by "
            "almost nothing; it is not shown here or in the heatmap (the CSV keeps its value)."
        )
    if np.isinf(values).any():
        notes.append(f"inf: {baseline}'s Dice is 0 for at least one seed there (the ratio is infinite).")
    return table + (f"\n{' '.join(notes)}\n" if notes else "")


def ood_sections(writer: Writer, evidence: Evidence, baseline: str) -> None:
    images = evidence.images
    metrics = ["dice", *[m for m in JOURNAL_METRICS if m in images and images[m].notna().any()]]
    dice_table = None
    for metric in metrics:
        table = evidence.ood(baseline, metric)
        if table.empty:
            continue
        if metric == "dice":
            dice_table = table
            writer.text("## Out-of-domain performance\n")
        name = METRIC_NAMES[metric]
        direction = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
        csv = writer.csv(f"ood_{metric}.csv", table)
        markdown = ood_markdown(table, metric)
        writer.table_file(f"ood_{metric}.md", lambda p, text=markdown: p.write_text(text))
        tex = writer.table_file(f"ood_{metric}.tex", lambda p, t=table, m=metric: p.write_text(ood_latex(t, m)))
        writer.text(
            f"### {name} ({direction}); mean (std) over test images and seeds\n\n{markdown}\n"
            f"Bold: best per row. †: differs from {baseline} by a t-test on the seeds (trained models), Holm-corrected "
            "across the table; the CSV also has the per-image Wilcoxon p (variation over the test set). "
            f"[CSV with p-values and intervals]({csv}), [LaTeX]({tex}).\n"
        )
    if dice_table is None or not (dice_table.groupby("label")["level"].nunique() >= 2).any():
        return
    cov = robustness_cov(dice_table)
    cov_link = writer.csv("robustness_cov.csv", cov)
    ranking = {"variant": rank_variants(cov), "group": rank_groups(cov)}
    writer.text(
        f"## Robustness across test levels\n\nCoV of the per-level mean Dice (lower = more robust); "
        f"[per data set]({cov_link}).\n"
    )
    for kind, table in ranking.items():
        link = writer.csv(f"robustness_ranking_{kind}s.csv", table, index=True)
        table = table.copy()
        table.index.name = kind
        writer.text(f"Ranking of {kind}s ([CSV]({link})):\n\n" + frame_markdown(table, digits=4))


def levels_section(writer, images: pd.DataFrame) -> str:
    """Mean TS and Dice per test level, the check that harder lowers TS and easier raises it, and how Dice moves.

    Args:
        writer: The report's writer (``csv(name, frame) -> link``).
        images: Output of :func:`analysis.frames.image_scores`.

    Returns:
        The section's Markdown ('' if the study has no test levels); writes ``tables/test_levels.csv``.
    """
    summary = level_summary(images)
    if summary.empty:
        return ""
    link = writer.csv("test_levels.csv", summary)
    columns = list(summary.columns)
    variants = columns[columns.index("mean_dice") + 1 : columns.index("ts_change")]
    header = [
        "data set",
        "test level",
        "per-image rows",
        "mean TS",
        "TS vs in_domain",
        "mean Dice",
        "Dice vs in_domain",
        *variants,
    ]
    against = dice_against_name(summary)
    rows, previous = [], None
    for position, row in enumerate(summary.itertuples(index=False)):
        values = row._asdict()
        cells = [row.label if row.label != previous else "", row.level, str(row.n), format_number(row.mean_ts)]
        cells += [_ts_change(values), format_number(row.mean_dice), _dice_change(values, against.iloc[position])]
        rows.append(cells + [format_number(values[v]) for v in variants])
        previous = row.label
    return (
        "## Test levels: texture similarity and Dice\n\n"
        "Mean TS (higher = foreground and background textures differ more = easier) and mean Dice per test level, "
        f"over test images, seeds and (for mean Dice) variants ([CSV]({link})).\n\n"
        f"{level_check_line(summary)}\n\n{level_dice_line(summary)}\n\n"
        + markdown_table(header, rows, align="ll" + "r" * (len(header) - 2))
    )


def _ts_change(values: dict) -> str:
    if values["level"] == "in_domain":
        return ""
    expected = {True: " (as named)", False: " (**not as named**)"}.get(values["as_expected"], "")
    return _signed(values["ts_change"]) + expected


def _dice_change(values: dict, against: bool) -> str:
    if values["level"] == "in_domain":
        return ""
    return _signed(values["dice_change"]) + (" (**against its name**)" if against else "")


def _signed(value: float) -> str:
    """``+0.123`` / ``-0.123`` (``NaN`` and ``inf`` as :func:`format_number` writes them)."""
    text = format_number(value)
    return text if text.startswith("-") or not np.isfinite(value) else f"+{text}"
