"""Report sections that check the study: the paper's claims, the test levels' TS, mixed run settings, axis notes.

Each function renders Markdown for ``report.md`` (and writes its CSV through the report's writer); the
numbers come from :mod:`analysis.claims` and :mod:`analysis.tables.levels`. :data:`METHODS` closes the report.
"""

from __future__ import annotations

import pandas as pd

from analysis.claims import CLAIMS, PAPER, evaluate_claims
from analysis.claims.checks import CONTRADICTS, INCONCLUSIVE, SUPPORTS
from analysis.claims.evidence import Evidence
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
  (or of test level b).
- Relative difference: (D(v, a, s, b) - D(baseline, a, s, b)) / D(baseline, a, s, b), pairing the baseline
  trained with the same seed. Matrix cells average it over seeds; the in-domain relative improvement is the
  diagonal b = a, with the sample standard deviation (ddof=1) over seeds as its spread. A cell with a missing
  (variant, alpha, seed) is NaN, never a mean over fewer seeds.
- Out-of-domain tables: mean (std, ddof=1) of the per-image metric pooled over all test images and seeds.
  Best per row in bold (highest Dice/NSD, lowest HD95/ASD, at the printed precision).
- Significance: per cell, a two-sided Wilcoxon signed-rank test on the paired per-image differences
  (same image, same seed, variant minus baseline), a percentile bootstrap 95% interval of the mean
  difference (seeded), and a Holm correction across the cells of each table (matrix or metric table);
  a dagger (tables) or an asterisk (heatmaps) marks a cell that survives it at the 5% level.
- Claims: each verdict's rule and thresholds are printed under the claims table (`analysis/claims.py`).
- Robustness: CoV = std / mean of a variant's per-level mean Dice (population std, ddof=0); lower is more
  robust. A group's CoV on a data set is the mean over its member variants present.
"""


def claims_section(writer, evidence: Evidence, claims=CLAIMS) -> str:
    """The verdict of each claim on this study's data, as Markdown; writes ``tables/claims.csv``.

    Args:
        writer: The report's writer (``csv(name, frame) -> link``).
        evidence: The tables the report computed (paired tests per matrix and OOD table).
        claims: Claims to check.

    Returns:
        The section's Markdown.
    """
    verdicts = evaluate_claims(evidence, claims)
    link = writer.csv("claims.csv", verdicts)
    counts = verdicts["verdict"].value_counts()
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in (SUPPORTS, CONTRADICTS, INCONCLUSIVE))
    rows = [
        [r.claim, r.dataset, r.variant, MARKS[r.verdict], r.measured.replace("|", "/")] for r in verdicts.itertuples()
    ]
    rules = "\n".join(
        f"- **{claim.name}** ({PAPER}, {claim.source}): {claim.statement}. Rule: {rule}."
        for claim in claims
        for rule in verdicts.loc[verdicts["claim"] == claim.name, "rule"].head(1)
    )
    return (
        f"## Claims of {PAPER}\n\n"
        f"Each claim checked on this study's data ({tally}; [CSV]({link})). A claim the study cannot test "
        "(a missing variant, one seed, no test levels) is INCONCLUSIVE, with the reason. The claims and their "
        "thresholds live in `analysis/claims.py`.\n\n"
        + markdown_table(["claim", "data set", "variant", "verdict", "measured"], rows, align="lllll")
        + f"\n{rules}\n"
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
