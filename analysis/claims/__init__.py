"""The claims of Kamath et al. (MICCAI 2023), and whether a study's data supports them.

    python -m analysis report results/miccai2023_cpu      # report.md opens with the verdict table

Each claim is one :class:`Claim` in :data:`CLAIMS`: its statement, the variants it is about and the baseline,
the metric, a threshold, and the kind of check (a :class:`~analysis.claims.checks.Kind` in
:data:`analysis.claims.checks.EVALUATORS`). To check a claim of your own, add an entry here that reuses a kind,
for example that V-Net's in-domain results match the no-skip V-Net's at the easy levels::

    Claim(name="vnet_parity", statement="V-Net and its no-skip version agree at easy levels",
          kind="parity_above", variants=("vnet",), baseline="noskip_vnet", threshold=0.02),

A new kind is a check of one (data set, variants) unit, ``(claim, evidence, dataset, variants) -> Finding``,
added to ``EVALUATORS`` as a ``Kind`` with its verdict rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.claims.checks import EVALUATORS, Verdict
from analysis.claims.evidence import Evidence

PAPER = "Kamath et al., MICCAI 2023"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, and how to check it.

    Attributes:
        name: Short identifier, also the ``claim`` column of the verdict table.
        statement: The claim in words, as the report prints it.
        kind: Key of its :class:`~analysis.claims.checks.Kind` in :data:`~analysis.claims.checks.EVALUATORS`.
        variants: Variants the claim is about, each compared with ``baseline``.
        baseline: Reference variant (the paper's NoSkipU-Net).
        metric: Per-image metric compared; higher must be better (``dice`` or ``nsd``).
        threshold: The kind's threshold (an effect size, a tolerance or a fraction: see the kind's rule).
        min_levels: Fewest alpha levels a kind that looks for a band of levels needs.
        source: Where the paper states it.
    """

    name: str
    statement: str
    kind: str
    variants: tuple[str, ...]
    baseline: str = "noskip_unet"
    metric: str = "dice"
    threshold: float = 0.02
    min_levels: int = 2
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EVALUATORS:
            raise ValueError(f"claim {self.name}: kind {self.kind!r} is not one of {sorted(EVALUATORS)}")
        if not self.variants:
            raise ValueError(f"claim {self.name}: variants is empty")


CLAIMS: tuple[Claim, ...] = (
    Claim(
        name="in_domain_parity",
        statement="Above some alpha, the variants' in-domain Dice does not differ significantly (paper: alpha > 0.3)",
        kind="parity_above",
        variants=("unet", "attention_unet"),
        threshold=0.02,
        min_levels=2,
        source="Sec. 3.1, Fig. 4 left",
    ),
    Claim(
        name="attention_gain_grows",
        statement="Below that alpha attention_unet gains over noskip_unet, and the gain grows as alpha falls "
        "(non-linear)",
        kind="gain_grows_as_alpha_falls",
        variants=("attention_unet",),
        threshold=0.02,
        source="Sec. 3.1, Fig. 4 left",
    ),
    Claim(
        name="unet_noisier",
        statement="The standard U-Net is noisier than noskip_unet (std of in-domain Dice across seeds)",
        kind="noisier_across_seeds",
        variants=("unet",),
        threshold=0.5,
        source="Sec. 3.1",
    ),
    Claim(
        name="ood_cross_alpha",
        statement="Tested on other alphas than trained on, skip variants lose more Dice than noskip_unet",
        kind="loses_more_cross_alpha",
        variants=("unet", "attention_unet"),
        threshold=0.02,
        source="Sec. 3.1, Fig. 4 right",
    ),
    Claim(
        name="ood_test_levels",
        statement="On the harder/easier test levels, skip variants lose more Dice than noskip_unet",
        kind="loses_more_on_test_levels",
        variants=("unet", "attention_unet"),
        threshold=0.02,
        source="Sec. 3.2, Table 1",
    ),
)

VERDICT_COLUMNS = ["claim", "statement", "source", "dataset", "variant", "verdict", "value", "measured", "rule"]


def evaluate_claims(evidence: Evidence, claims: tuple[Claim, ...] | list[Claim] = CLAIMS) -> pd.DataFrame:
    """Check each claim against a study's per-image results.

    Args:
        evidence: The study's tables: ``Evidence(image_scores(...))``, with its bootstrap and Holm settings
            for the tests not already computed (the report passes the one holding its paired tests).
        claims: Claims to check (default: the paper's).

    Returns:
        One row per (claim, data set, variant): :data:`VERDICT_COLUMNS`, ``verdict`` one of SUPPORTS,
        CONTRADICTS, INCONCLUSIVE.
    """
    rows = []
    for claim in claims:
        verdicts: list[Verdict] = EVALUATORS[claim.kind](claim, evidence)
        order = {name: position for position, name in enumerate(claim.variants)}
        verdicts.sort(key=lambda v: (v.dataset, order.get(v.variant, -1)))
        rows += [
            {"statement": claim.statement, "source": f"{PAPER}, {claim.source}" if claim.source else "", **v.__dict__}
            for v in verdicts
        ]
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)
