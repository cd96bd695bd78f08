"""Report sections that check the study: the paper's claims, the test levels' TS, mixed run settings, axis notes.

Each function renders Markdown for ``report.md`` (and writes its CSV through the report's writer); the
numbers come from :mod:`analysis.claims` and :mod:`analysis.tables.levels`. :data:`METHODS` closes the report.
"""

from __future__ import annotations

import pandas as pd

from analysis.claims import CLAIMS, CONTRADICTS, INCONCLUSIVE, SUPPORTS
from analysis.claims.evidence import Evidence
from analysis.claims.table1 import table1_comparison, table1_markdown_rows
from analysis.report.formatting import markdown_table

CROSS_ALPHA_NOTE = (
    "Axes: rows are the alpha a model was **trained** on, columns the alpha it was **tested** on; the diagonal "
    "is the in-domain result. The paper's Fig. 4 (right) text calls its rows the trained alpha, but the authors' "
    "released CSV behind it has rows = tested alpha and columns = trained alpha, so the text reads as if its "
    "heatmap were transposed: transpose the paper's matrix before comparing its cells with these.\n"
)
MIXED_SETTINGS = {  # runs.parquet column -> what differs, and what that changes
    "param.precision": ("precisions", "epoch times are not comparable and low precision can move Dice"),
    "param.torch_threads": ("torch thread counts", "epoch times are not comparable"),
}
MARKS = {SUPPORTS: "SUPPORTS", CONTRADICTS: "**CONTRADICTS**", INCONCLUSIVE: "INCONCLUSIVE"}
METHODS = """## Methods

- D(v, a, s, b): mean Dice of variant v, trained on alpha a with seed s, over the test images of alpha b
  (or of test level b): one number per trained model and test condition.
- Relative difference: (D(v, a, s, b) - D(baseline, a, s, b)) / D(baseline, a, s, b), pairing the baseline
  trained with the same seed. Matrix cells average it over seeds; the in-domain relative improvement is the
  diagonal b = a, with the sample standard deviation (ddof=1) over seeds as its spread. A cell with a missing
  (variant, alpha, seed) is NaN, never a mean over fewer seeds.
- Out-of-domain tables: mean (std, ddof=1) of the per-image metric pooled over all test images and seeds, as
  the paper prints them. Best per row in bold (highest Dice/NSD, lowest HD95/ASD, at the printed precision).
- Significance: the unit of replication is the trained model. Per cell, each seed's effect (the difference,
  or relative difference, of two models trained with that seed, each averaged over the same test images) is
  one replicate; the cell's effect is their mean, its 95% interval a Student-t interval and its test a
  two-sided one-sample t-test, both with seeds - 1 degrees of freedom; Holm corrects across the cells of each
  table (matrix or metric table); a dagger (tables) or an asterisk (heatmaps) marks a cell that survives it at
  the 5% level. With one seed nothing is tested. The test CSVs also give a bootstrap interval that resamples
  seeds and test images (crossed: every seed sees the same images), which adds test-set variation, and a
  Wilcoxon p-value over the pooled per-image pairs (`p_images`): that one describes variation over the test
  set for these few models, not a difference between variants, and is never used for a verdict.
- Negligible differences: an equivalence test (two one-sided t-tests on the seeds, TOST) against the margin
  each claim states; a non-significant difference is never read as "no difference".
- Claims: each verdict's rule and thresholds are printed under the claims table (`analysis/claims/`).
- Robustness: CoV = std / mean of a variant's per-level mean Dice (population std, ddof=0); lower is more
  robust. A group's CoV on a data set is the mean over its member variants present.
"""


def claims_section(writer, verdicts: pd.DataFrame, claims=CLAIMS) -> str:
    """The verdict of each claim on this study's data, as Markdown; writes ``tables/claims.csv``.

    Args:
        writer: The report's writer (``csv(name, frame) -> link``).
        verdicts: :func:`analysis.claims.evaluate_claims` of the study.
        claims: The claims checked (for their quotes and rules).

    Returns:
        The section's Markdown.
    """
    link = writer.csv("claims.csv", verdicts)
    counts = verdicts["verdict"].value_counts()
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in (SUPPORTS, CONTRADICTS, INCONCLUSIVE))
    rows = [
        [r.claim, r.dataset, r.variant, MARKS[r.verdict], r.measured.replace("|", "/")] for r in verdicts.itertuples()
    ]
    quotes = []
    for claim in claims:
        rules = verdicts.loc[verdicts["claim"] == claim.name, "rule"].head(1)
        for rule in rules:
            quotes.append(f'- **{claim.name}** ({claim.paper}, {claim.source}): "{claim.quote}" Rule: {rule}.')
    return (
        "## Claims of the papers\n\n"
        f"Each sentence checked on this study's data ({tally}; [CSV]({link})). SUPPORTS and CONTRADICTS each need "
        "seed-level evidence; everything else is INCONCLUSIVE with its reason. The sentences and their rules live in "
        "`analysis/claims/paper.py` and `analysis/claims/checks.py`.\n\n"
        + markdown_table(["claim", "data set", "variant", "verdict", "measured"], rows, align="lllll")
        + "\n"
        + "\n".join(quotes)
        + "\n"
    )


def table1_section(writer, evidence: Evidence) -> str:
    """MICCAI Table 1 cell by cell against this study's medical runs ('' when it has none); writes its CSV."""
    table = table1_comparison(evidence)
    if table.empty:
        return ""
    link = writer.csv("table1_comparison.csv", table)
    inside = table["paper_inside_ci"].dropna()
    header = [
        "data set",
        "test level",
        "variant",
        "paper: mean (std)",
        "ours: mean [95% CI over seeds]",
        "ours - paper",
    ]
    return (
        "## MICCAI 2023 Table 1, cell by cell\n\n"
        f"The paper's Dice (mean (std) over test images) beside ours (mean over seeds of each model's mean Dice, "
        f"Student-t interval over seeds); the paper's mean lies inside our interval in {int(inside.sum())} of "
        f"{len(inside)} cells with an interval ([CSV]({link})). Data and training differ from the paper's (see the "
        "summary), so this says how close the numbers are, not whether either is right.\n\n"
        + markdown_table(header, table1_markdown_rows(table), align="llllrr")
    )


def mixed_settings(runs: pd.DataFrame) -> list[str]:
    """Warnings for runs that mix precisions or thread counts, or changed them on resume (nothing when not recorded)."""
    messages = []
    for column, (what, consequence) in MIXED_SETTINGS.items():
        if column not in runs:
            continue
        values = runs[column].dropna().astype(str)
        counts = values[~values.isin(["nan", "None", ""])].value_counts()
        if len(counts) > 1:
            listed = ", ".join(f"{value} ({count} runs)" for value, count in sorted(counts.items()))
            messages.append(f"runs mix {what}: {listed}; {consequence}")
    if "params_changed" in runs:
        changed = runs[runs["params_changed"].fillna("").astype(str) != ""]
        if len(changed):
            listed = ", ".join(f"{row.run_name} ({row.params_changed})" for row in changed.itertuples())
            messages.append(
                f"{len(changed)} run(s) resumed with other settings than they started with (their params keep the "
                f"first): {listed}"
            )
    return messages
