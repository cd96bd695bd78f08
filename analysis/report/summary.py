"""The top of report.md: what this study can and cannot conclude, in plain words, computed from its data.

Design (variants, levels, seeds, image size, epochs, precision), the smallest difference its seeds can detect
(the power line), the verdicts with their effect sizes, and where its protocol differs from the paper's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.claims import CONTRADICTS, INCONCLUSIVE, SUPPORTS
from analysis.claims.evidence import Evidence
from analysis.frames import format_alpha, ordered_variants
from analysis.statistics.seeds import MIN_SEEDS, minimum_detectable_effect

PAPER_PROTOCOL = {  # runs.parquet param column -> (what, the MICCAI 2023 value for synthetic data)
    "param.image_size": ("image size (px)", 256),
    "param.epochs": ("epochs", 100),
    "param.learning_rate": ("learning rate", 1e-3),
    "param.batch_size": ("batch size", 8),
}
PAPER_MEDICAL = {"param.learning_rate": 1e-2}  # the papers' medical protocol, where it differs from the synthetic
PAPER_SEEDS = 3
PAPER_LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 10))


def _values(runs: pd.DataFrame, column: str) -> list[str]:
    if column not in runs:
        return []
    return sorted({str(v) for v in runs[column].dropna()})


def design_lines(runs: pd.DataFrame, evidence: Evidence) -> list[str]:
    """One line per data set: variants, alpha levels or test levels, seeds; then size, epochs, precision."""
    lines = []
    for dataset, block in runs.groupby("dataset", sort=True):
        variants = ", ".join(ordered_variants(block["variant"].unique()))
        seeds = block.groupby("variant")["seed"].nunique().min()
        alphas = sorted(block["train_alpha"].dropna().unique())
        levels = sorted(evidence.images.loc[evidence.images["dataset"] == dataset, "condition"].unique())
        grid = f"{len(alphas)} alpha levels ({', '.join(map(format_alpha, alphas))})" if alphas else "no alpha levels"
        test_levels = [level for level in levels if not level.startswith("alpha_")]
        tested = f"; test levels {', '.join(test_levels)}" if test_levels else ""
        lines.append(f"- **{dataset}**: {variants}; {grid}; {seeds} seed(s) per cell{tested}")
    settings = []
    for column, (what, _) in PAPER_PROTOCOL.items():
        values = _values(runs, column)
        if values:
            settings.append(f"{what} {'/'.join(values)}")
    precision = _values(runs, "param.precision")
    if precision:
        settings.append(f"precision {'/'.join(precision)}")
    if settings:
        lines.append("- training: " + ", ".join(settings))
    return lines


def power_lines(evidence: Evidence, baseline: str) -> list[str]:
    """Per synthetic data set and variant, the smallest relative in-domain gain its seeds detect (80%, 5%)."""
    lines = []
    for dataset in evidence.synthetic_datasets():
        variants = [v for v in ordered_variants(evidence.images["variant"].unique()) if v != baseline]
        for variant in variants:
            if evidence.absent(dataset, (variant, baseline)):
                continue
            gains = evidence.relative_gain(dataset, variant, baseline, "dice")
            k = int(gains.notna().sum().min()) if not gains.empty else 0
            if k < 2:
                lines.append(
                    f"- {dataset}, {variant}: {k} seed(s) per cell: no difference between variants can be tested"
                )
                continue
            spread = float(np.sqrt(np.nanmean(gains.var(ddof=1).to_numpy())))
            smallest = minimum_detectable_effect(spread, k)
            lines.append(
                f"- {dataset}, {variant} vs {baseline}: seed-to-seed std of the relative in-domain gain {spread:.1%} "
                f"(pooled over alphas), so {k} seeds detect a gain of about {smallest:.1%} or more with 80% power "
                "(t-test, 5%, before Holm); smaller true differences will usually read INCONCLUSIVE"
            )
    return lines


def _short(text: str, limit: int = 220) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def verdict_lines(verdicts: pd.DataFrame) -> list[str]:
    """Supported and contradicted claims with their measurement, then the inconclusive ones grouped by reason."""
    lines = []
    for verdict, word in ((SUPPORTS, "Supports"), (CONTRADICTS, "Contradicts")):
        chosen = verdicts[verdicts["verdict"] == verdict]
        for row in chosen.itertuples():
            lines.append(f"- **{word}** `{row.claim}` ({row.dataset}): {_short(row.measured)}")
    undecided = verdicts[verdicts["verdict"] == INCONCLUSIVE]
    if len(undecided):
        lines.append(f"- **Inconclusive** ({len(undecided)}):")
        for row in undecided.itertuples():
            lines.append(f"  - `{row.claim}` ({row.dataset}): {_short(row.measured, 160)}")
    return lines


def difference_lines(runs: pd.DataFrame, evidence: Evidence) -> list[str]:
    """Where this study's protocol differs from MICCAI 2023's, measured from its runs.

    Synthetic runs are held to the synthetic protocol, medical runs (no training alpha) to the medical one
    (:data:`PAPER_MEDICAL`: learning rate 1e-2); a study with both names the part a line is about.
    """
    lines = []
    parts = {"synthetic": runs[runs["train_alpha"].notna()], "medical": runs[runs["train_alpha"].isna()]}
    parts = {part: rows for part, rows in parts.items() if not rows.empty}
    for part, rows in parts.items():
        named = f" ({part})" if len(parts) > 1 else ""
        for column, (what, paper) in PAPER_PROTOCOL.items():
            paper = PAPER_MEDICAL.get(column, paper) if part == "medical" else paper
            values = _values(rows, column)
            numbers = {float(v) for v in values if _is_number(v)}
            if numbers and numbers != {float(paper)}:
                lines.append(f"- {what}{named}: {'/'.join(values)} (paper: {paper})")
    seeds = int(runs.groupby(["dataset", "variant", "train_alpha"], dropna=False)["seed"].nunique().min())
    if seeds != PAPER_SEEDS:
        lines.append(f"- seeds per cell: {seeds} (paper: {PAPER_SEEDS}; the released code: 5)")
    alphas = sorted(round(a, 6) for a in runs["train_alpha"].dropna().unique())
    if alphas and alphas != [round(a, 6) for a in PAPER_LEVELS]:
        lines.append(f"- alpha levels: {', '.join(map(format_alpha, alphas))} (paper: 0.10 to 0.90 in steps of 0.10)")
    precision = [p for p in _values(runs, "param.precision") if p not in ("fp32", "none", "")]
    if precision:
        lines.append(f"- training precision: {'/'.join(precision)} (paper: fp32); evaluation stays fp32")
    if not evidence.level_datasets(medical=True):
        lines.append("- no medical data set: the paper's Table 1 and the journal's medical counts cannot be checked")
    return lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def summary_section(runs: pd.DataFrame, evidence: Evidence, verdicts: pd.DataFrame, baseline: str) -> str:
    """The report's opening section, written from the study's own data.

    Args:
        runs: ``runs.parquet``.
        evidence: The study's per-seed scores and tests.
        verdicts: :func:`analysis.claims.evaluate_claims` of the study.
        baseline: The variant the others are compared with.

    Returns:
        Markdown.
    """
    counts = verdicts["verdict"].value_counts()
    seeds = int(runs.groupby(["dataset", "variant", "train_alpha"], dropna=False)["seed"].nunique().min())
    if evidence.images.empty:
        headline = (
            f"This export has **no per-image rows**, so no test result could be read: all {len(verdicts)} claims were "
            "skipped (listed below). Export the runs again; each finished run should carry its per_image.parquet."
        )
    elif seeds < MIN_SEEDS:
        headline = (
            f"With {seeds} seed(s) per cell this study **cannot decide any claim about differences between "
            f"variants**: a difference between trained models needs at least {MIN_SEEDS} of them per variant. It "
            "shows the study's gradient; rerun with more seeds (e.g. `seeds: [0, 1, 2, 3, 4]`) to test the claims."
        )
    else:
        headline = (
            f"{counts.get(SUPPORTS, 0)} verdicts support the papers' sentences, {counts.get(CONTRADICTS, 0)} "
            f"contradict them and {counts.get(INCONCLUSIVE, 0)} are inconclusive; each decided verdict rests on "
            f"{seeds} or more trained models per cell (the unit of replication), never on test images as replicates."
        )
    parts = [
        "## What this study can conclude\n",
        headline + "\n",
        "**Design**\n",
        *design_lines(runs, evidence),
        "",
        "**What its seeds can detect**\n",
        *(power_lines(evidence, baseline) or ["- no synthetic in-domain comparison"]),
        "",
        "**Verdicts**\n",
        *verdict_lines(verdicts),
        "",
        "**Differences from the paper's protocol**\n",
        *(difference_lines(runs, evidence) or ["- none found in the recorded params"]),
        "",
    ]
    return "\n".join(parts) + "\n"
