"""The papers' claims, and whether a study's data supports them.

    python -m analysis report results/miccai2023_cpu      # report.md opens with the verdict table

Rooms: ``model`` (what a claim and a verdict are), ``paper`` (the sentences, quoted, and Table 1's numbers),
``evidence`` (per-seed scores and seed-level tests, computed once), ``checks`` (one check and rule per kind),
``table1`` (MICCAI Table 1, cell by cell, against a medical study).
"""

from __future__ import annotations

import pandas as pd

from analysis.claims.checks import KINDS
from analysis.claims.evidence import Evidence
from analysis.claims.model import CONTRADICTS, INCONCLUSIVE, SUPPORTS, Claim, Verdict
from analysis.claims.paper import CLAIMS

__all__ = ["CLAIMS", "CONTRADICTS", "INCONCLUSIVE", "SUPPORTS", "VERDICT_COLUMNS", "Claim", "evaluate_claims"]

VERDICT_COLUMNS = [
    "claim",
    "paper",
    "source",
    "quote",
    "dataset",
    "variant",
    "verdict",
    "value",
    "measured",
    "rule",
]


def evaluate_claims(evidence: Evidence, claims: tuple[Claim, ...] | list[Claim] = CLAIMS) -> pd.DataFrame:
    """Check each claim against a study's per-image results.

    Args:
        evidence: The study's per-seed scores and tests (``Evidence(image_scores(...))``).
        claims: Claims to check (default: the papers').

    Returns:
        One row per (claim, data set): :data:`VERDICT_COLUMNS`, ``verdict`` one of SUPPORTS, CONTRADICTS,
        INCONCLUSIVE.

    Raises:
        ValueError: A claim names a kind that does not exist.
    """
    rows = []
    for claim in claims:
        if claim.kind not in KINDS:
            raise ValueError(f"claim {claim.name}: kind {claim.kind!r} is not one of {sorted(KINDS)}")
        verdicts: list[Verdict] = KINDS[claim.kind](claim, evidence)
        for verdict in sorted(verdicts, key=lambda v: v.dataset):
            rows.append({"paper": claim.paper, "source": claim.source, "quote": claim.quote, **verdict.__dict__})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)
