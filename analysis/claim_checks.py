"""How a claim of a paper is checked against a study: the claim record, its verdicts, and one evaluator per kind.

An evaluator is a function ``(claim, evidence) -> list[Verdict]`` registered in :data:`EVALUATORS` under its
kind; it reads the study's tables through :class:`analysis.evidence.Evidence`, which holds the per-cell paired
tests the report computed, so a verdict uses the same significance as the tables beside it.
A claim is tested per synthetic or medical data set and per variant it names; a study that cannot test it
(a missing variant, one seed, no test levels) gets an INCONCLUSIVE verdict that says why. The verdict rules
and their thresholds are the ``RULE`` strings below, filled in with the claim's own numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.evidence import Evidence, flag
from analysis.frames import format_alpha
from analysis.tables import strict_mean, strict_std

SUPPORTS, CONTRADICTS, INCONCLUSIVE = "SUPPORTS", "CONTRADICTS", "INCONCLUSIVE"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, and how to check it.

    Attributes:
        name: Short identifier, also the ``claim`` column of the verdict table.
        statement: The claim in words, as the report prints it.
        kind: Key of its evaluator in :data:`EVALUATORS`.
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


def _verdict(claim: Claim, dataset: str, variant: str, verdict: str, value: float, measured: str, rule: str):
    return Verdict(claim.name, dataset, variant, verdict, float(value), measured, rule.format(c=claim))


def _units(claim: Claim, evidence: Evidence, rule: str, levels: bool = False, joint: bool = False):
    """(dataset, variants) units to test, and INCONCLUSIVE verdicts for those the study lacks.

    The data sets are those with cross-alpha results, or with test levels when ``levels``; ``joint`` tests the
    claim's variants together instead of one by one.
    """
    datasets = evidence.level_datasets() if levels else evidence.synthetic_datasets()
    groups = [tuple(claim.variants)] if joint else [(variant,) for variant in claim.variants]
    units, verdicts = [], []
    if not datasets:
        what = "in_domain test level" if levels else "cross-alpha (synthetic)"
        for group in groups:
            verdicts.append(
                _verdict(claim, "-", ", ".join(group), INCONCLUSIVE, np.nan, f"the study has no {what} results", rule)
            )
    for dataset in datasets:
        for group in groups:
            absent = evidence.absent(dataset, (claim.baseline, *group), levels=levels)
            if absent:
                measured = f"{', '.join(absent)} not in the study"
                verdicts.append(_verdict(claim, dataset, ", ".join(group), INCONCLUSIVE, np.nan, measured, rule))
            else:
                units.append((dataset, group))
    return units, verdicts


def _nan_levels(cells: pd.DataFrame) -> str:
    return ", ".join(format_alpha(alpha) for alpha in cells.index[cells["gain"].isna()])


PARITY_RULE = (
    "a level differs when its in-domain cell differs from {c.baseline} after Holm (5%) by a relative "
    "{c.threshold:.0%} or more; SUPPORTS when no variant differs at the {c.min_levels} or more easiest levels"
)


def parity_above(claim: Claim, evidence: Evidence) -> list[Verdict]:
    """Above some alpha, no variant differs significantly from the baseline in-domain; value: that alpha."""
    units, verdicts = _units(claim, evidence, PARITY_RULE, joint=True)
    for dataset, group in units:
        names = ", ".join(group)
        cells = {
            variant: evidence.in_domain_cells(dataset, variant, claim.baseline, claim.metric, claim.threshold)
            for variant in group
        }
        alphas = sorted(set().union(*(frame.index for frame in cells.values())))
        missing = "; ".join(f"{v} at alpha {_nan_levels(f)}" for v, f in cells.items() if f["gain"].isna().any())
        if len(alphas) < claim.min_levels or missing:
            why = missing and f"no in-domain result for {missing}"
            measured = why or f"{len(alphas)} alpha level(s), fewer than {claim.min_levels}"
            verdicts.append(_verdict(claim, dataset, names, INCONCLUSIVE, np.nan, measured, PARITY_RULE))
            continue
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
        value = band[-1] if band else np.nan
        verdicts.append(_verdict(claim, dataset, names, verdict, value, measured, PARITY_RULE))
    return verdicts


GAIN_RULE = (
    "a gain is a relative in-domain improvement of {c.threshold:.0%} or more that survives Holm (5%); SUPPORTS when "
    "gains occur at the hardest levels only (a contiguous band from the lowest alpha, not all levels) and, from the "
    "lowest alpha to the first level without one, the gain never rises by more than {c.threshold:.0%} as alpha rises"
)


def gain_grows_as_alpha_falls(claim: Claim, evidence: Evidence) -> list[Verdict]:
    """The variant gains only below some alpha, and more the lower alpha; value: the gain at the lowest alpha."""
    units, verdicts = _units(claim, evidence, GAIN_RULE)
    for dataset, (variant,) in units:
        cells = evidence.in_domain_cells(dataset, variant, claim.baseline, claim.metric, claim.threshold)
        if len(cells) < 3 or cells["gain"].isna().any():
            why = f"no in-domain result at alpha {_nan_levels(cells)}" if len(cells) >= 3 else "fewer than 3 levels"
            verdicts.append(_verdict(claim, dataset, variant, INCONCLUSIVE, np.nan, why, GAIN_RULE))
            continue
        alphas, gains = list(cells.index), cells["gain"].to_numpy()
        gain = (cells["significant"] & (cells["gain"] >= claim.threshold)).to_numpy()
        band = int(np.argmin(gain)) if not gain.all() else len(gain)
        listed = ", ".join(
            f"{format_alpha(a)}: {g:+.1%}{'*' if s else ''}" for a, g, s in zip(alphas, gains, gain, strict=True)
        )
        measured = f"gain per alpha (*: significant gain) {listed}"
        rises = [i for i in range(min(band, len(gains) - 1)) if gains[i + 1] > gains[i] + claim.threshold]
        if not gain.any() or gain[band:].any() or band == len(gains) or rises:
            verdict = CONTRADICTS
        else:
            verdict = SUPPORTS
            measured = f"gains below alpha {format_alpha(alphas[band])}, largest at the lowest; " + measured
        verdicts.append(_verdict(claim, dataset, variant, verdict, gains[0], measured, GAIN_RULE))
    return verdicts


NOISE_RULE = (
    "per alpha, the std (ddof=1) over seeds of the in-domain {c.metric}; SUPPORTS when the variant's std exceeds "
    "{c.baseline}'s at more than {c.threshold:.0%} of the levels, CONTRADICTS when {c.baseline}'s is the larger at "
    "the rest or more (equal spreads count for neither); needs 2 or more seeds"
)


def noisier_across_seeds(claim: Claim, evidence: Evidence) -> list[Verdict]:
    """The variant's in-domain score varies more across seeds than the baseline's; value: share of levels."""
    units, verdicts = _units(claim, evidence, NOISE_RULE)
    scores = evidence.scores(claim.metric)
    for dataset, (variant,) in units:
        rows = scores[(scores["dataset"] == dataset) & np.isclose(scores["train_alpha"], scores["test_alpha"])]
        n_seeds = rows["seed"].nunique()
        spread = rows.groupby(["variant", "train_alpha"])[claim.metric].agg(strict_std)
        compared = pd.DataFrame({"mine": spread[variant], "base": spread[claim.baseline]}).dropna()
        if n_seeds < 2 or compared.empty:
            why = f"{n_seeds} seed: no spread across seeds" if n_seeds < 2 else "no level with every seed"
            verdicts.append(_verdict(claim, dataset, variant, INCONCLUSIVE, np.nan, why, NOISE_RULE))
            continue
        tied = np.isclose(compared["mine"], compared["base"], rtol=1e-6, atol=1e-12)
        noisier = float(((compared["mine"] > compared["base"]) & ~tied).mean())
        quieter = float(((compared["mine"] < compared["base"]) & ~tied).mean())
        ratio = compared["mine"].mean() / compared["base"].mean() if compared["base"].mean() > 0 else np.inf
        measured = (
            f"std over {n_seeds} seeds higher than {claim.baseline}'s at {noisier:.0%} of {len(compared)} levels; "
            f"mean std {compared['mine'].mean():.3f} vs {compared['base'].mean():.3f} (ratio {ratio:.2f})"
        )
        verdict = INCONCLUSIVE
        if noisier > claim.threshold:
            verdict = SUPPORTS
        elif quieter >= 1.0 - claim.threshold:
            verdict = CONTRADICTS
        else:
            measured += "; neither is the noisier at enough levels (equal spreads count for neither)"
        verdicts.append(_verdict(claim, dataset, variant, verdict, noisier, measured, NOISE_RULE))
    return verdicts


LOSS_RULE = (
    "drop = (in-domain {c.metric} - out-of-domain {c.metric}) / in-domain {c.metric} of the same model; SUPPORTS when "
    "the variant's mean drop exceeds {c.baseline}'s by {c.threshold:.0%} or more and {c.baseline} is better in at "
    "least one out-of-domain cell after Holm (5%); CONTRADICTS when the excess is smaller; else INCONCLUSIVE"
)


def _loss_verdict(claim, dataset, variant, extra: float, n_worse: int, n_cells: int, detail: str) -> Verdict:
    measured = (
        f"mean extra drop vs {claim.baseline} {extra:+.1%} over {n_cells} out-of-domain cell(s) ({detail}); "
        f"{claim.baseline} significantly better in {n_worse} of them"
    )
    if not np.isfinite(extra):
        return _verdict(claim, dataset, variant, INCONCLUSIVE, np.nan, "no complete out-of-domain cell", LOSS_RULE)
    verdict = CONTRADICTS if extra < claim.threshold else SUPPORTS if n_worse else INCONCLUSIVE
    if verdict == INCONCLUSIVE:
        measured = "a larger drop, but no cell where it is significant: " + measured
    return _verdict(claim, dataset, variant, verdict, extra, measured, LOSS_RULE)


def loses_more_cross_alpha(claim: Claim, evidence: Evidence) -> list[Verdict]:
    """Tested on other alphas than trained on, the variant loses more than the baseline; value: mean extra drop."""
    units, verdicts = _units(claim, evidence, LOSS_RULE)
    scores = evidence.scores(claim.metric)
    for dataset, (variant,) in units:
        rows = scores[scores["dataset"] == dataset]
        in_domain = rows[np.isclose(rows["train_alpha"], rows["test_alpha"])]
        keys = ["variant", "train_alpha", "seed"]
        rows = rows.merge(in_domain[[*keys, claim.metric]], on=keys, suffixes=("", "_in"))
        rows = rows[~np.isclose(rows["train_alpha"], rows["test_alpha"])]
        rows = rows.assign(drop=(rows[f"{claim.metric}_in"] - rows[claim.metric]) / rows[f"{claim.metric}_in"])
        drop = rows.groupby(["variant", "train_alpha", "test_alpha"])["drop"].agg(strict_mean)
        if drop.empty:
            verdicts.append(_verdict(claim, dataset, variant, INCONCLUSIVE, np.nan, "one alpha level", LOSS_RULE))
            continue
        extra = (drop[variant] - drop[claim.baseline]).dropna()
        tests = evidence.matrix(dataset, variant, claim.baseline, claim.metric)
        off = tests[~np.isclose(tests["train_alpha"], tests["test_alpha"])]
        n_worse = int((flag(off["significant"]) & (off["mean_diff"] < 0)).sum())
        harder = extra[extra.index.get_level_values(1) < extra.index.get_level_values(0)]
        easier = extra[extra.index.get_level_values(1) > extra.index.get_level_values(0)]
        parts = {"tested on lower alpha": harder, "on higher alpha": easier}
        detail = ", ".join(f"{name} {part.mean():+.1%}" for name, part in parts.items() if len(part))
        mean = float(extra.mean()) if len(extra) else np.nan
        verdicts.append(_loss_verdict(claim, dataset, variant, mean, n_worse, len(extra), detail))
    return verdicts


def loses_more_on_test_levels(claim: Claim, evidence: Evidence) -> list[Verdict]:
    """On the perturbed test levels (harder, easier, ...) the variant loses more than the baseline."""
    units, verdicts = _units(claim, evidence, LOSS_RULE, levels=True)
    if not units:
        return verdicts
    table = evidence.ood(claim.baseline, claim.metric)
    for dataset, (variant,) in units:
        rows = table[(table["dataset"] == dataset) & table["variant"].isin([variant, claim.baseline])]
        rows = rows.assign(train_alpha=rows["train_alpha"].fillna(-1.0))  # medical data sets: one block
        means = rows.set_index(["train_alpha", "level", "variant"])["mean"].unstack("variant")
        means = means.reset_index().set_index("train_alpha")
        if {variant, claim.baseline} - set(means.columns):
            why = f"no {claim.metric} on the test levels"
            verdicts.append(_verdict(claim, dataset, variant, INCONCLUSIVE, np.nan, why, LOSS_RULE))
            continue
        in_domain = means[means["level"] == "in_domain"].drop(columns="level")
        shifted = means[means["level"] != "in_domain"]
        if shifted.empty:
            why = "only the in_domain test level"
            verdicts.append(_verdict(claim, dataset, variant, INCONCLUSIVE, np.nan, why, LOSS_RULE))
            continue
        drop = (in_domain.reindex(shifted.index) - shifted.drop(columns="level")) / in_domain.reindex(shifted.index)
        extra = (drop[variant] - drop[claim.baseline]).rename("extra").to_frame().assign(level=shifted["level"])
        per_level = extra.groupby("level", sort=False)["extra"].mean()
        detail = ", ".join(f"{level} {value:+.1%}" for level, value in per_level.items())
        cells = rows[(rows["variant"] == variant) & (rows["level"] != "in_domain")]
        n_worse = int((flag(cells["significant"]) & (cells["mean_diff"] < 0)).sum())
        finite = extra["extra"].dropna()
        mean = float(finite.mean()) if len(finite) else np.nan
        verdicts.append(_loss_verdict(claim, dataset, variant, mean, n_worse, len(finite), detail))
    return verdicts


EVALUATORS = {
    "parity_above": parity_above,
    "gain_grows_as_alpha_falls": gain_grows_as_alpha_falls,
    "noisier_across_seeds": noisier_across_seeds,
    "loses_more_cross_alpha": loses_more_cross_alpha,
    "loses_more_on_test_levels": loses_more_on_test_levels,
}
