"""What a claim is and what checking it gives: :class:`Claim`, :class:`Finding`, :class:`Verdict` (no checks here).

Kept apart from the checks (:mod:`analysis.claims.checks`) and the list of the papers' claims
(:mod:`analysis.claims.paper`), so that each of those imports this module and nothing imports in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

SUPPORTS, CONTRADICTS, INCONCLUSIVE = "SUPPORTS", "CONTRADICTS", "INCONCLUSIVE"
MICCAI = "Kamath et al., MICCAI 2023"
JOURNAL = "Kamath et al., journal 2025 (abstract)"
UDTRANSNET = "Wang et al., Neural Networks 2024 (UDTransNet)"


@dataclass(frozen=True)
class Claim:
    """One sentence of a paper, and how a study's data is checked against it.

    Attributes:
        name: Short identifier, the ``claim`` column of the verdict table.
        paper: Which paper (:data:`MICCAI` or :data:`JOURNAL`).
        source: Where in it (section, figure or table).
        quote: The sentence, quoted.
        kind: Name of its check in :data:`analysis.claims.checks.KINDS`.
        variants: Variants the claim is about (each compared with ``baseline``, or together: see the kind).
        baseline: Reference variant (the paper's NoSkipU-Net).
        metric: Per-image metric (``dice``, or ``hd95`` where lower is better).
        margin: Equivalence margin: a difference inside ``+-margin`` is negligible (relative or absolute Dice,
            as the kind's rule says).
        boundary: The alpha the sentence names as the edge of the effect (MICCAI: 0.3).
        cells: Named (trained alpha, tested alpha) cells of the cross-alpha matrix.
        datasets: Data sets the sentence is about (empty: every data set the kind applies to).
        levels: Test levels the sentence is about.
        paper_count: The count the sentence reports, e.g. "5/8" (printed beside ours).
    """

    name: str
    paper: str
    source: str
    quote: str
    kind: str
    variants: tuple[str, ...] = ()
    baseline: str = "noskip_unet"
    metric: str = "dice"
    margin: float = 0.02
    boundary: float = 0.3
    cells: tuple[tuple[float, float], ...] = ()
    datasets: tuple[str, ...] = ()
    levels: tuple[str, ...] = ("harder",)
    paper_count: str = ""


class Finding(NamedTuple):
    """What a check found on one unit: the verdict, its deciding number and the measurement in words."""

    verdict: str
    value: float
    measured: str


def inconclusive(why: str, value: float = np.nan) -> Finding:
    """The finding of a unit the study cannot decide, with the reason."""
    return Finding(INCONCLUSIVE, value, why)


@dataclass(frozen=True)
class Verdict:
    """What the data says about one claim on one data set and variant.

    Attributes:
        claim: The claim's name.
        dataset: Data set tested (``-`` when the study has none the claim applies to, ``all`` for a count).
        variant: Variant(s) compared with the baseline.
        verdict: SUPPORTS, CONTRADICTS or INCONCLUSIVE.
        value: The deciding number (an effect, an alpha, a count; NaN when there is none).
        measured: What was measured, in words with the numbers, or why nothing could be decided.
        rule: The rule and thresholds that turned the measurement into the verdict.
    """

    claim: str
    dataset: str
    variant: str
    verdict: str
    value: float
    measured: str
    rule: str
