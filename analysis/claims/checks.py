"""How a claim (:class:`analysis.claims.Claim`) is checked against a study: its verdicts, and one check per kind.

A kind is a :class:`Kind` in :data:`EVALUATORS`: a check ``(claim, evidence, dataset, variants) -> Finding``
of one unit, its verdict rule, and which units it is tested on. A claim is tested per synthetic or medical
data set and per variant it names (or all its variants together); a study that cannot test it (a missing
variant, one seed, no test levels) gets an INCONCLUSIVE verdict that says why. Checks read the study's tables
through :class:`analysis.claims.evidence.Evidence`, which holds the per-cell paired tests the report computed, so a
verdict uses the same significance as the tables beside it. The verdict rules and their thresholds are the
``RULE`` strings below, filled in with the claim's own numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from analysis.claims.evidence import Evidence, flag
from analysis.frames import format_alpha
from analysis.tables.relative import strict_mean, strict_std

if TYPE_CHECKING:
    from analysis.claims import Claim

SUPPORTS, CONTRADICTS, INCONCLUSIVE = "SUPPORTS", "CONTRADICTS", "INCONCLUSIVE"


@dataclass(frozen=True)
class Verdict:
    """What the data says about one claim on one data set and variant.

    Attributes:
        claim: The claim's name.
        dataset: Data set tested (``-`` when the study has none the claim applies to).
        variant: Variant(s) compared with the baseline.
        verdict: SUPPORTS, CONTRADICTS or INCONCLUSIVE.
        value: The deciding number (an alpha, a gain, a fraction or an extra drop; NaN when inconclusive).
        measured: What was measured, in words with the numbers.
        rule: The rule and thresholds that turned the measurement into the verdict.
    """

    claim: str
    dataset: str
    variant: str
    verdict: str
    value: float
    measured: str
    rule: str


class Finding(NamedTuple):
    """What a kind's check found on one unit: the verdict, its deciding number and the measurement in words."""

    verdict: str
    value: float
    measured: str


def inconclusive(why: str) -> Finding:
    """The finding of a unit the study cannot decide, with the reason."""
    return Finding(INCONCLUSIVE, np.nan, why)


@dataclass(frozen=True)
class Kind:
    """A kind of claim: the units a claim of it is tested on, how one unit is checked, and the verdict rule.

    Calling it with ``(claim, evidence)`` gives the claim's verdicts: one per (data set, variants) unit, the
    units being the data sets with cross-alpha results (or with test levels when ``levels``) times the claim's
    variants one by one (or all together when ``joint``). A unit the study lacks is INCONCLUSIVE.

    Attributes:
        check: ``(claim, evidence, dataset, variants) -> Finding`` for a unit whose variants are all in the study.
        rule: The verdict rule, formatted with the claim as ``c`` (``{c.threshold:.0%}``).
        levels: Test on the perturbed test levels instead of the cross-alpha results.
        joint: Test the claim's variants together instead of one by one.
    """

    check: Callable[[Claim, Evidence, str, tuple[str, ...]], Finding]
    rule: str
    levels: bool = False
    joint: bool = False

    def __call__(self, claim: Claim, evidence: Evidence) -> list[Verdict]:
        datasets = evidence.level_datasets() if self.levels else evidence.synthetic_datasets()
        groups = [tuple(claim.variants)] if self.joint else [(variant,) for variant in claim.variants]
        if not datasets:
            what = "in_domain test level" if self.levels else "cross-alpha (synthetic)"
            found = inconclusive(f"the study has no {what} results")
            return [self._verdict(claim, "-", group, found) for group in groups]
        verdicts = []
        for dataset in datasets:
            for group in groups:
                absent = evidence.absent(dataset, (claim.baseline, *group), levels=self.levels)
                if absent:
                    found = inconclusive(f"{', '.join(absent)} not in the study")
                else:
                    found = self.check(claim, evidence, dataset, group)
                verdicts.append(self._verdict(claim, dataset, group, found))
        return verdicts

    def _verdict(self, claim: Claim, dataset: str, group: tuple[str, ...], found: Finding) -> Verdict:
        measured, rule = found.measured, self.rule.format(c=claim)
        return Verdict(claim.name, dataset, ", ".join(group), found.verdict, float(found.value), measured, rule)


PARITY_RULE = (
    "a level differs when its in-domain cell differs from {c.baseline} after Holm (5%) by a relative "
    "{c.threshold:.0%} or more; SUPPORTS when no variant differs at the {c.min_levels} or more easiest levels"
)


def parity_above(claim: Claim, evidence: Evidence, dataset: str, variants: tuple[str, ...]) -> Finding:
    """Above some alpha, no variant differs significantly from the baseline in-domain; value: that alpha."""
    cells = {
        variant: evidence.in_domain_cells(dataset, variant, claim.baseline, claim.metric, claim.threshold)
        for variant in variants
    }
    alphas = sorted(set().union(*(frame.index for frame in cells.values())))
    missing = "; ".join(f"{v} at alpha {_nan_levels(f)}" for v, f in cells.items() if f["gain"].isna().any())
    if len(alphas) < claim.min_levels or missing:
        why = missing and f"no in-domain result for {missing}"
        return inconclusive(why or f"{len(alphas)} alpha level(s), fewer than {claim.min_levels}")
    band = []
    for alpha in reversed(alphas):
        if any(frame.loc[alpha, "differs"] for frame in cells.values()):
            break
        band.append(alpha)
    if len(band) == len(alphas):
        measured = f"no variant differs from {claim.baseline} at any alpha ({format_alpha(alphas[0])} and up)"
    else:
        first = alphas[len(alphas) - len(band) - 1]
        shown = ", ".join(
            f"{v} {f.loc[first, 'gain']:+.1%} (p_holm {f.loc[first, 'p_holm']:.2g})"
            for v, f in cells.items()
            if f.loc[first, "differs"]
        )
        if band:
            measured = (
                f"differences stop being significant above alpha {format_alpha(first)}: none at alpha >= "
                f"{format_alpha(band[-1])}; at {format_alpha(first)}: {shown}"
            )
        else:
            measured = f"a variant differs at the easiest alpha {format_alpha(first)}: {shown}"
    verdict = SUPPORTS if len(band) >= claim.min_levels else CONTRADICTS
    return Finding(verdict, band[-1] if band else np.nan, measured)


def _nan_levels(cells: pd.DataFrame) -> str:
    return ", ".join(format_alpha(alpha) for alpha in cells.index[cells["gain"].isna()])


GAIN_RULE = (
    "a gain is a relative in-domain improvement of {c.threshold:.0%} or more that survives Holm (5%); SUPPORTS when "
    "gains occur at the hardest levels only (a contiguous band from the lowest alpha, not all levels) and, from the "
    "lowest alpha to the first level without one, the gain never rises by more than {c.threshold:.0%} as alpha rises"
)


def gain_grows_as_alpha_falls(claim: Claim, evidence: Evidence, dataset: str, variants: tuple[str, ...]) -> Finding:
    """The variant gains only below some alpha, and more the lower alpha; value: the gain at the lowest alpha."""
    (variant,) = variants
    cells = evidence.in_domain_cells(dataset, variant, claim.baseline, claim.metric, claim.threshold)
    if len(cells) < 3 or cells["gain"].isna().any():
        why = f"no in-domain result at alpha {_nan_levels(cells)}" if len(cells) >= 3 else "fewer than 3 levels"
        return inconclusive(why)
    alphas, gains = list(cells.index), cells["gain"].to_numpy()
    gain = (cells["significant"] & (cells["gain"] >= claim.threshold)).to_numpy()
    band = int(np.argmin(gain)) if not gain.all() else len(gain)
    listed = ", ".join(
        f"{format_alpha(a)}: {g:+.1%}{'*' if s else ''}" for a, g, s in zip(alphas, gains, gain, strict=True)
    )
    measured = f"gain per alpha (*: significant gain) {listed}"
    rises = [i for i in range(min(band, len(gains) - 1)) if gains[i + 1] > gains[i] + claim.threshold]
    if not gain.any() or gain[band:].any() or band == len(gains) or rises:
        return Finding(CONTRADICTS, gains[0], measured)
    supported = f"gains below alpha {format_alpha(alphas[band])}, largest at the lowest; "
    return Finding(SUPPORTS, gains[0], supported + measured)


NOISE_RULE = (
    "per alpha, the std (ddof=1) over seeds of the in-domain {c.metric}; SUPPORTS when the variant's std exceeds "
    "{c.baseline}'s at more than {c.threshold:.0%} of the levels, CONTRADICTS when {c.baseline}'s is the larger at "
    "the rest or more (equal spreads count for neither); needs 2 or more seeds"
)


def noisier_across_seeds(claim: Claim, evidence: Evidence, dataset: str, variants: tuple[str, ...]) -> Finding:
    """The variant's in-domain score varies more across seeds than the baseline's; value: share of levels."""
    (variant,) = variants
    scores = evidence.scores(claim.metric)
    rows = scores[(scores["dataset"] == dataset) & np.isclose(scores["train_alpha"], scores["test_alpha"])]
    n_seeds = rows["seed"].nunique()
    spread = rows.groupby(["variant", "train_alpha"])[claim.metric].agg(strict_std)
    compared = pd.DataFrame({"mine": spread[variant], "base": spread[claim.baseline]}).dropna()
    if n_seeds < 2 or compared.empty:
        return inconclusive(f"{n_seeds} seed: no spread across seeds" if n_seeds < 2 else "no level with every seed")
    tied = np.isclose(compared["mine"], compared["base"], rtol=1e-6, atol=1e-12)
    noisier = float(((compared["mine"] > compared["base"]) & ~tied).mean())
    quieter = float(((compared["mine"] < compared["base"]) & ~tied).mean())
    ratio = compared["mine"].mean() / compared["base"].mean() if compared["base"].mean() > 0 else np.inf
    measured = (
        f"std over {n_seeds} seeds higher than {claim.baseline}'s at {noisier:.0%} of {len(compared)} levels; "
        f"mean std {compared['mine'].mean():.3f} vs {compared['base'].mean():.3f} (ratio {ratio:.2f})"
    )
    if noisier > claim.threshold:
        return Finding(SUPPORTS, noisier, measured)
    if quieter >= 1.0 - claim.threshold:
        return Finding(CONTRADICTS, noisier, measured)
    measured += "; neither is the noisier at enough levels (equal spreads count for neither)"
    return Finding(INCONCLUSIVE, noisier, measured)


LOSS_RULE = (
    "drop = (in-domain {c.metric} - out-of-domain {c.metric}) / in-domain {c.metric} of the same model; SUPPORTS when "
    "the variant's mean drop exceeds {c.baseline}'s by {c.threshold:.0%} or more and {c.baseline} is better in at "
    "least one out-of-domain cell after Holm (5%); CONTRADICTS when the excess is smaller; else INCONCLUSIVE"
)


def _drop(in_domain, out_of_domain):
    """The relative drop of :data:`LOSS_RULE` (element-wise on Series or frames)."""
    return (in_domain - out_of_domain) / in_domain


def _loss_finding(claim: Claim, extra: pd.Series, tests: pd.DataFrame, detail: str) -> Finding:
    """Finding of a loss kind from the variant's extra drop per out-of-domain cell (NaN: incomplete cell).

    ``tests`` are the paired tests of those cells against the baseline; ``detail`` breaks the mean down.
    """
    extra = extra.dropna()
    mean = float(extra.mean()) if len(extra) else np.nan
    if not np.isfinite(mean):
        return inconclusive("no complete out-of-domain cell")
    n_worse = int((flag(tests["significant"]) & (tests["mean_diff"] < 0)).sum())
    measured = (
        f"mean extra drop vs {claim.baseline} {mean:+.1%} over {len(extra)} out-of-domain cell(s) ({detail}); "
        f"{claim.baseline} significantly better in {n_worse} of them"
    )
    if mean < claim.threshold:
        return Finding(CONTRADICTS, mean, measured)
    if n_worse:
        return Finding(SUPPORTS, mean, measured)
    return Finding(INCONCLUSIVE, mean, "a larger drop, but no cell where it is significant: " + measured)


def loses_more_cross_alpha(claim: Claim, evidence: Evidence, dataset: str, variants: tuple[str, ...]) -> Finding:
    """Tested on other alphas than trained on, the variant loses more than the baseline; value: mean extra drop."""
    (variant,) = variants
    scores = evidence.scores(claim.metric)
    rows = scores[scores["dataset"] == dataset]
    in_domain = rows[np.isclose(rows["train_alpha"], rows["test_alpha"])]
    keys = ["variant", "train_alpha", "seed"]
    rows = rows.merge(in_domain[[*keys, claim.metric]], on=keys, suffixes=("", "_in"))
    rows = rows[~np.isclose(rows["train_alpha"], rows["test_alpha"])]
    rows = rows.assign(drop=_drop(rows[f"{claim.metric}_in"], rows[claim.metric]))
    drop = rows.groupby(["variant", "train_alpha", "test_alpha"])["drop"].agg(strict_mean)
    if drop.empty:
        return inconclusive("one alpha level")
    extra = (drop[variant] - drop[claim.baseline]).dropna()
    tests = evidence.matrix(dataset, variant, claim.baseline, claim.metric)
    trained, tested = extra.index.get_level_values(0), extra.index.get_level_values(1)
    parts = {"tested on lower alpha": extra[tested < trained], "on higher alpha": extra[tested > trained]}
    detail = ", ".join(f"{name} {part.mean():+.1%}" for name, part in parts.items() if len(part))
    return _loss_finding(claim, extra, tests[~np.isclose(tests["train_alpha"], tests["test_alpha"])], detail)


def loses_more_on_test_levels(claim: Claim, evidence: Evidence, dataset: str, variants: tuple[str, ...]) -> Finding:
    """On the perturbed test levels (harder, easier, ...) the variant loses more than the baseline; value: as above."""
    (variant,) = variants
    table = evidence.ood(claim.baseline, claim.metric)
    rows = table[(table["dataset"] == dataset) & table["variant"].isin([variant, claim.baseline])]
    rows = rows.assign(train_alpha=rows["train_alpha"].fillna(-1.0))  # medical data sets: one block
    means = rows.set_index(["train_alpha", "level", "variant"])["mean"].unstack("variant")
    means = means.reset_index().set_index("train_alpha")
    if {variant, claim.baseline} - set(means.columns):
        return inconclusive(f"no {claim.metric} on the test levels")
    in_domain = means[means["level"] == "in_domain"].drop(columns="level")
    shifted = means[means["level"] != "in_domain"]
    if shifted.empty:
        return inconclusive("only the in_domain test level")
    drop = _drop(in_domain.reindex(shifted.index), shifted.drop(columns="level"))
    extra = (drop[variant] - drop[claim.baseline]).rename("extra").to_frame().assign(level=shifted["level"])
    per_level = extra.groupby("level", sort=False)["extra"].mean()
    detail = ", ".join(f"{level} {value:+.1%}" for level, value in per_level.items())
    cells = rows[(rows["variant"] == variant) & (rows["level"] != "in_domain")]
    return _loss_finding(claim, extra["extra"], cells, detail)


EVALUATORS: dict[str, Kind] = {
    "parity_above": Kind(parity_above, PARITY_RULE, joint=True),
    "gain_grows_as_alpha_falls": Kind(gain_grows_as_alpha_falls, GAIN_RULE),
    "noisier_across_seeds": Kind(noisier_across_seeds, NOISE_RULE),
    "loses_more_cross_alpha": Kind(loses_more_cross_alpha, LOSS_RULE),
    "loses_more_on_test_levels": Kind(loses_more_on_test_levels, LOSS_RULE, levels=True),
}
