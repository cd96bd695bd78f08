"""How each kind of claim is checked: the units it is tested on, the check of one unit and its verdict rule.

Every rule is symmetric: SUPPORTS needs evidence for the sentence, CONTRADICTS evidence against it, and anything
else is INCONCLUSIVE with the reason. Evidence is seed-level (:mod:`analysis.statistics.seeds`): effects are
computed per trained model, tests have seeds - 1 degrees of freedom, and a unit with fewer than
:data:`~analysis.statistics.seeds.MIN_SEEDS` seeds is INCONCLUSIVE. "Negligible difference" is an equivalence
test (TOST) against the claim's margin, never a non-significant p-value.

A kind is a :class:`Kind` in :data:`KINDS`: ``check(claim, evidence, dataset) -> Finding`` for one data set (or
the whole study, ``scope="study"``), the rule printed under the verdict table (formatted with the claim as
``c``), and the data sets it applies to: ``synthetic`` (cross-alpha results), ``medical`` (test levels of a
medical data set), ``levels`` (test levels of any data set) or ``study`` (one verdict over everything).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis.claims.evidence import Evidence
from analysis.claims.model import CONTRADICTS, INCONCLUSIVE, SUPPORTS, Claim, Finding, Verdict, inconclusive
from analysis.claims.subsets import (
    CONTRIBUTION_MARGIN,
    best_between_datasets,
    best_changes,
    contributions_differ,
    subset_scores,
)
from analysis.frames import (
    BASELINE_FLOOR,
    LOWER_IS_BETTER,
    VARIANT_GROUPS,
    dataset_label,
    format_alpha,
    variant_group,
)
from analysis.statistics.paired import holm
from analysis.statistics.seeds import DIFFERENT, EQUIVALENT, MIN_SEEDS, equivalence, seed_effect

__all__ = ["CONTRADICTS", "INCONCLUSIVE", "KINDS", "SUPPORTS", "Kind"]


@dataclass(frozen=True)
class Kind:
    """A kind of claim: where it is tested, how one unit is checked, and the rule in words.

    Attributes:
        check: ``(claim, evidence, dataset) -> Finding``; ``dataset`` is ``"all"`` for ``scope="study"``.
        rule: The verdict rule, formatted with the claim as ``c``.
        scope: ``synthetic``, ``medical``, ``levels``, ``any`` (every data set) or ``study``.
        seeds: Whether the check needs seed-level inference (fewer than 3 seeds: INCONCLUSIVE).
        named: Whether the claim's variants and baseline are names the study must hold (else the check finds its
            own variants, such as every skip subset, and says itself what it lacks).
    """

    check: Callable[[Claim, Evidence, str], Finding]
    rule: str
    scope: str = "synthetic"
    seeds: bool = True
    named: bool = True

    def __call__(self, claim: Claim, evidence: Evidence) -> list[Verdict]:
        variant = ", ".join(claim.variants) or "-"
        if self.seeds and evidence.images.empty:
            why = "skipped: the export has no per-image rows (per_image.parquet is empty); export the runs again"
            return [self._verdict(claim, "-", variant, inconclusive(why))]
        if self.scope == "study":
            return [self._verdict(claim, "all", variant, self._checked(claim, evidence, "all"))]
        datasets = self._datasets(claim, evidence)
        if not datasets:
            return [self._verdict(claim, "-", variant, inconclusive(self._nothing_to_test(claim)))]
        return [self._verdict(claim, d, variant, self._checked(claim, evidence, d)) for d in datasets]

    def _datasets(self, claim: Claim, evidence: Evidence) -> list[str]:
        if self.scope == "synthetic":
            found = evidence.synthetic_datasets()
        elif self.scope == "any":
            found = sorted({*evidence.synthetic_datasets(), *evidence.level_datasets()})
        else:
            found = evidence.level_datasets(medical=self.scope == "medical")
        return [d for d in found if not claim.datasets or d in claim.datasets]

    def _nothing_to_test(self, claim: Claim) -> str:
        named = f" ({', '.join(claim.datasets)})" if claim.datasets else ""
        if self.scope == "synthetic":
            return "the study has no cross-alpha (synthetic) results"
        if self.scope == "medical":
            return f"the sentence is about medical test sets{named}; this study has none"
        if self.scope == "any":
            return f"the study has no in-domain results{named}"
        return f"the study has no test levels{named}"

    def _checked(self, claim: Claim, evidence: Evidence, dataset: str) -> Finding:
        if dataset != "all" and self.named:
            wanted = (claim.baseline, *claim.variants)
            absent = evidence.absent(dataset, wanted, levels=self.scope != "synthetic")
            if absent:
                return inconclusive(f"{', '.join(absent)} not in the study")
            seeds = evidence.n_seeds(dataset, wanted)
            if self.seeds and seeds < MIN_SEEDS:
                return inconclusive(
                    f"{seeds} seed(s): a difference between variants needs at least {MIN_SEEDS} trained models each"
                )
        return self.check(claim, evidence, dataset)

    def _verdict(self, claim: Claim, dataset: str, variant: str, found: Finding) -> Verdict:
        rule = self.rule.format(c=claim)
        return Verdict(claim.name, dataset, variant, found.verdict, float(found.value), found.measured, rule)


def _pct(value: float) -> str:
    return f"{value:+.1%}" if np.isfinite(value) else "NaN"


def _interval(effects, percent: bool = True) -> str:
    """``+4.1% [95% CI +1.0%, +7.2%], 5 seeds`` of per-seed effects."""
    s = seed_effect(effects)
    show = _pct if percent else (lambda v: f"{v:+.3f}")
    return f"{show(s.mean)} [95% CI {show(s.ci_low)}, {show(s.ci_high)}]"


def _holm_effects(effects: list) -> tuple[list, list[float]]:
    """Seed-level summaries of several per-seed effects, and their p-values Holm-corrected as one family."""
    summaries = [seed_effect(e) for e in effects]
    return summaries, list(holm([s.p_value for s in summaries]))


def _directional(effects, margin: float, level: float, measured: str) -> Finding:
    """SUPPORTS a positive significant mean per-seed effect; CONTRADICTS a negative significant one or one equivalent
    to 0 within ``+-margin`` (TOST); else INCONCLUSIVE. The value is the mean effect."""
    effect = seed_effect(effects)
    if effect.p_value <= level and effect.mean > 0:
        return Finding(SUPPORTS, effect.mean, measured)
    if (effect.p_value <= level and effect.mean < 0) or equivalence(effects, margin, level).outcome == EQUIVALENT:
        return Finding(CONTRADICTS, effect.mean, measured)
    return Finding(INCONCLUSIVE, effect.mean, measured)


# --- in-domain: parity, gains, noise ----------------------------------------------------------------------

PARITY_RULE = (
    "per seed, relative in-domain gain (D_v - D_{c.baseline}) / D_{c.baseline}; SUPPORTS when every (variant, alpha "
    "> {c.boundary}) cell is equivalent to {c.baseline} within +-{c.margin:.0%} (TOST, 5%); CONTRADICTS when a cell "
    "lies outside the margin (one-sided t, 5% Bonferroni over the cells); else INCONCLUSIVE. Also measured: the "
    "highest alpha at which a variant differs significantly (t-test on seeds, Holm over all in-domain cells)"
)


def parity_above(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """Above the boundary every variant is equivalent to the baseline in-domain; value: the highest differing alpha."""
    gains = {v: evidence.relative_gain(dataset, v, claim.baseline, claim.metric) for v in claim.variants}
    above = [(v, a) for v, frame in gains.items() for a in frame.columns if a > claim.boundary + 1e-9]
    if not above:
        return inconclusive(f"no alpha level above {format_alpha(claim.boundary)}")
    tested = {(v, a): equivalence(gains[v][a], claim.margin, evidence.level) for v, a in above}
    family = len(tested)
    outside = [key for key, e in tested.items() if e.p_outside < evidence.level / family]
    inside = [key for key, e in tested.items() if e.outcome == EQUIVALENT]
    boundary = _highest_difference(gains, evidence.level)
    listed = "; ".join(f"{v} {format_alpha(a)}: {_interval(gains[v][a])}" for v, a in above)
    where = (
        f"highest alpha with a significant difference: {format_alpha(boundary)}"
        if np.isfinite(boundary)
        else "no alpha with a significant difference"
    )
    measured = (
        f"{len(inside)} of {family} cells above alpha {format_alpha(claim.boundary)} equivalent within "
        f"+-{claim.margin:.0%}, {len(outside)} outside; {where} (paper: {format_alpha(claim.boundary)}); {listed}"
    )
    if outside:
        return Finding(CONTRADICTS, boundary, measured)
    if len(inside) == family:
        return Finding(SUPPORTS, boundary, measured)
    return Finding(INCONCLUSIVE, boundary, "the interval straddles the margin in some cell: " + measured)


def _highest_difference(gains: dict[str, pd.DataFrame], level: float) -> float:
    """The highest alpha at which any variant's in-domain gain differs from zero (t on seeds, Holm over cells)."""
    keys = [(v, a) for v, frame in gains.items() for a in frame.columns]
    _, adjusted = _holm_effects([gains[v][a] for v, a in keys])
    differing = [a for (_, a), p in zip(keys, adjusted, strict=True) if np.isfinite(p) and p <= level]
    return float(max(differing)) if differing else float("nan")


GAIN_RULE = (
    "per seed, relative in-domain gain of the variant over {c.baseline} at each alpha < {c.boundary}; SUPPORTS when "
    "a gain is positive and significant (t-test on seeds, Holm over those levels, 5%); CONTRADICTS when at every "
    "such level the gain is equivalent to 0 within +-{c.margin:.0%} (TOST) or significantly negative; else "
    "INCONCLUSIVE"
)


def gain_below(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """The variant's gain appears below the boundary; value: the largest significant gain (else the mean gain)."""
    (variant,) = claim.variants
    gains = evidence.relative_gain(dataset, variant, claim.baseline, claim.metric)
    below = [a for a in gains.columns if a < claim.boundary - 1e-9]
    if not below:
        return inconclusive(f"no alpha level below {format_alpha(claim.boundary)}")
    effects, adjusted = _holm_effects([gains[a] for a in below])
    positive = [a for a, e, p in zip(below, effects, adjusted, strict=True) if p <= evidence.level and e.mean > 0]
    against = [
        a
        for a, e, p in zip(below, effects, adjusted, strict=True)
        if (p <= evidence.level and e.mean < 0)
        or equivalence(gains[a], claim.margin, evidence.level).outcome == EQUIVALENT
    ]
    listed = "; ".join(
        f"{format_alpha(a)}: {_interval(gains[a])} (p_holm {p:.2g})" for a, p in zip(below, adjusted, strict=True)
    )
    measured = f"gain below alpha {format_alpha(claim.boundary)}: {listed}"
    if positive:
        best = max(float(gains[a].mean()) for a in positive)
        return Finding(SUPPORTS, best, measured)
    if len(against) == len(below):
        return Finding(CONTRADICTS, float(np.mean([e.mean for e in effects])), measured)
    return Finding(
        INCONCLUSIVE, float(np.mean([e.mean for e in effects])), "no significant gain, none excluded: " + measured
    )


EXCEEDS_RULE = (
    "per seed, the mean over alphas < {c.boundary} of (gain of {c.variants[0]} - gain of {c.variants[1]}), each a "
    "relative in-domain gain over {c.baseline}; SUPPORTS when that is positive and significant (t-test on seeds, 5%); "
    "CONTRADICTS when it is significantly negative or equivalent to 0 within +-{c.margin:.0%} (TOST); else INCONCLUSIVE"
)


def gain_exceeds(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """The first variant gains more than the second where gains appear; value: the mean difference of gains."""
    first, second = claim.variants
    mine = evidence.relative_gain(dataset, first, claim.baseline, claim.metric)
    other = evidence.relative_gain(dataset, second, claim.baseline, claim.metric)
    below = [a for a in mine.columns if a < claim.boundary - 1e-9 and a in other.columns]
    if not below:
        return inconclusive(f"no alpha level below {format_alpha(claim.boundary)}")
    per_seed = (mine[below] - other[below]).mean(axis=1, skipna=False)
    measured = (
        f"{first} gain minus {second} gain over alpha {', '.join(map(format_alpha, below))}: {_interval(per_seed)}, "
        f"p {seed_effect(per_seed).p_value:.2g}"
    )
    return _directional(per_seed, claim.margin, evidence.level, measured)


SPREAD_RULE = (
    "per alpha, the variance over seeds of each variant's in-domain {c.metric}, pooled over the alphas (df = levels "
    "x (seeds - 1)); F = pooled variance of the variant / of {c.baseline}; SUPPORTS when F > 1 and the two-sided "
    "F-test is significant (5%), CONTRADICTS when F < 1 and significant, else INCONCLUSIVE"
)


def noisier_across_seeds(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """The variant's in-domain score varies more over seeds than the baseline's; value: the variance ratio F."""
    (variant,) = claim.variants
    mine = evidence.in_domain(dataset, variant, claim.metric)
    base = evidence.in_domain(dataset, claim.baseline, claim.metric)
    alphas = [
        a for a in mine.columns if a in base.columns and mine[a].notna().sum() >= 2 and base[a].notna().sum() >= 2
    ]
    if not alphas:
        return inconclusive("no level with 2 or more seeds for both variants")
    df_mine = int(sum(mine[a].notna().sum() - 1 for a in alphas))
    df_base = int(sum(base[a].notna().sum() - 1 for a in alphas))
    var_mine = sum(mine[a].var(ddof=1) * (mine[a].notna().sum() - 1) for a in alphas) / df_mine
    var_base = sum(base[a].var(ddof=1) * (base[a].notna().sum() - 1) for a in alphas) / df_base
    if var_base == 0 or var_mine == 0:
        return inconclusive(
            f"a variant has no spread across seeds (pooled std {np.sqrt(var_mine):.3g} vs {np.sqrt(var_base):.3g})"
        )
    ratio = float(var_mine / var_base)
    distribution = scipy_stats.f(df_mine, df_base)
    p_value = float(min(1.0, 2 * min(distribution.cdf(ratio), distribution.sf(ratio))))
    measured = (
        f"pooled std over seeds {np.sqrt(var_mine):.3f} ({variant}) vs {np.sqrt(var_base):.3f} ({claim.baseline}) "
        f"over {len(alphas)} levels: F = {ratio:.2f} (df {df_mine}, {df_base}), p {p_value:.2g}"
    )
    if p_value <= evidence.level:
        return Finding(SUPPORTS if ratio > 1 else CONTRADICTS, ratio, measured)
    return Finding(INCONCLUSIVE, ratio, measured)


JAGGED_RULE = (
    "per seed, the jaggedness of the in-domain {c.metric} curve over the alpha levels (mean |second difference| "
    "between neighbouring levels), variant minus {c.baseline} (same seed); SUPPORTS when positive and significant "
    "(t-test on seeds, 5%), CONTRADICTS when negative and significant, else INCONCLUSIVE; needs 3 or more levels"
)


def jaggedness(curve: pd.DataFrame) -> pd.Series:
    """Per seed (row), the mean absolute second difference of a curve over its columns (ordered levels)."""
    values = curve.sort_index(axis=1).to_numpy(dtype="float64")
    second = values[:, 2:] - 2 * values[:, 1:-1] + values[:, :-2]
    return pd.Series(np.abs(second).mean(axis=1), index=curve.index)


def noisier_curve(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """The variant's in-domain curve over alpha is more jagged than the baseline's; value: the mean difference."""
    (variant,) = claim.variants
    mine = evidence.in_domain(dataset, variant, claim.metric)
    base = evidence.in_domain(dataset, claim.baseline, claim.metric)
    alphas = [a for a in mine.columns if a in base.columns]
    if len(alphas) < 3:
        return inconclusive(f"{len(alphas)} alpha level(s): jaggedness needs 3 or more")
    difference = (jaggedness(mine[alphas]) - jaggedness(base[alphas])).dropna()
    effect = seed_effect(difference)
    measured = (
        f"mean absolute second difference of in-domain {claim.metric} over {len(alphas)} levels: "
        f"{jaggedness(mine[alphas]).mean():.4f} ({variant}) vs {jaggedness(base[alphas]).mean():.4f} "
        f"({claim.baseline}); per-seed difference {_interval(difference, percent=False)}, p {effect.p_value:.2g}"
    )
    if effect.p_value <= evidence.level:
        return Finding(SUPPORTS if effect.mean > 0 else CONTRADICTS, effect.mean, measured)
    return Finding(INCONCLUSIVE, effect.mean, measured)


# --- out of domain: the cross-alpha matrix ----------------------------------------------------------------

CELLS_RULE = (
    "per seed, relative difference (D_v - D_{c.baseline}) / D_{c.baseline} in each named (trained, tested) cell; "
    "SUPPORTS when {c.baseline} is significantly better in every named cell (t-test on seeds, Holm over the cells, "
    "5%); CONTRADICTS when the variant is significantly better in one, or equivalent within +-{c.margin:.0%} (TOST); "
    "else INCONCLUSIVE; a named cell the study lacks makes it INCONCLUSIVE"
)


def named_cells(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """The baseline beats the variant in the named cross-alpha cells; value: the mean relative difference."""
    (variant,) = claim.variants
    relative = evidence.relative_cross(dataset, variant, claim.baseline, claim.metric)
    columns = {(round(t, 6), round(s, 6)): column for column in relative.columns for t, s in [column]}
    lacking = [cell for cell in claim.cells if (round(cell[0], 6), round(cell[1], 6)) not in columns]
    name = "trained {0}, tested {1}".format
    if lacking:
        return inconclusive(
            "the study lacks the cell(s) " + "; ".join(name(*map(format_alpha, cell)) for cell in lacking)
        )
    reference = evidence.cross(dataset, claim.baseline, claim.metric).mean()
    low = [
        cell
        for cell in claim.cells
        if reference.get(columns[(round(cell[0], 6), round(cell[1], 6))], 0) < BASELINE_FLOOR
    ]
    if low:
        return inconclusive(
            f"{claim.baseline} Dice under {BASELINE_FLOOR:.2f} in "
            + "; ".join(name(*map(format_alpha, cell)) for cell in low)
            + ": a relative difference there divides by ~0"
        )
    effects = [relative[columns[(round(t, 6), round(s, 6))]] for t, s in claim.cells]
    summaries, adjusted = _holm_effects(effects)
    baseline_better = [p <= evidence.level and s.mean < 0 for s, p in zip(summaries, adjusted, strict=True)]
    variant_better = [p <= evidence.level and s.mean > 0 for s, p in zip(summaries, adjusted, strict=True)]
    equal = [equivalence(e, claim.margin, evidence.level).outcome == EQUIVALENT for e in effects]
    listed = "; ".join(
        f"{name(*map(format_alpha, cell))}: {_interval(e)} (p_holm {p:.2g})"
        for cell, e, p in zip(claim.cells, effects, adjusted, strict=True)
    )
    value = float(np.mean([s.mean for s in summaries]))
    if all(baseline_better):
        return Finding(SUPPORTS, value, f"{claim.baseline} better in every named cell: {listed}")
    if any(variant_better) or any(equal):
        return Finding(CONTRADICTS, value, f"{claim.baseline} not better in a named cell: {listed}")
    return Finding(INCONCLUSIVE, value, listed)


HARM_RULE = (
    "per seed, relative difference to {c.baseline} in every off-diagonal (trained != tested) cell whose "
    f"{{c.baseline}} Dice (mean over seeds) is {BASELINE_FLOOR:.2f} or more; SUPPORTS when "
    "{c.baseline} is significantly better in at least one (t-test on seeds, Holm over the off-diagonal cells, 5%); "
    "CONTRADICTS when in every such cell the variant is non-inferior (one-sided t: difference > -{c.margin:.0%}, 5%); "
    "else INCONCLUSIVE"
)


def harm_exists(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """Some out-of-domain cell where the baseline does better; value: how many such cells."""
    (variant,) = claim.variants
    relative = evidence.relative_cross(dataset, variant, claim.baseline, claim.metric)
    reference = evidence.cross(dataset, claim.baseline, claim.metric).mean()
    off = [column for column in relative.columns if not np.isclose(column[0], column[1])]
    if not off:
        return inconclusive("one alpha level: no out-of-domain cell")
    floor = [column for column in off if reference.get(column, np.nan) < BASELINE_FLOOR]
    off = [column for column in off if column not in floor and relative[column].notna().any()]
    if not off:
        return inconclusive(f"every out-of-domain cell has a {claim.baseline} Dice under {BASELINE_FLOOR:.2f}")
    summaries, adjusted = _holm_effects([relative[column] for column in off])
    harmed = [
        (column, s) for column, s, p in zip(off, summaries, adjusted, strict=True) if p <= evidence.level and s.mean < 0
    ]
    non_inferior = [equivalence(relative[c], claim.margin, evidence.level).p_above_lower < evidence.level for c in off]
    if harmed:
        worst = min(harmed, key=lambda item: item[1].mean)
        cell = f"trained {format_alpha(worst[0][0])}, tested {format_alpha(worst[0][1])}"
        measured = (
            f"{claim.baseline} significantly better in {len(harmed)} of {len(off)} out-of-domain cells; largest at "
            f"{cell}: {_interval(relative[worst[0]])}; {len(floor)} cells under the Dice floor left out"
        )
        return Finding(SUPPORTS, float(len(harmed)), measured)
    measured = (
        f"{claim.baseline} significantly better in none of {len(off)} cells; {variant} non-inferior "
        f"(> -{claim.margin:.0%}) in {sum(non_inferior)}; {len(floor)} cells under the Dice floor left out"
    )
    if all(non_inferior):
        return Finding(CONTRADICTS, 0.0, measured)
    return Finding(INCONCLUSIVE, 0.0, measured)


# --- medical test sets (MICCAI Table 1) -------------------------------------------------------------------

BEST_RULE = (
    "per seed, in-domain {c.metric} of {c.variants[0]} minus each other variant's (same seed, absolute); SUPPORTS when "
    "{c.variants[0]} is significantly better than every other (t-test on seeds, Holm, 5%); CONTRADICTS when another is "
    "significantly better or equivalent within +-{c.margin:.2f} (TOST); else INCONCLUSIVE"
)


def _level_effects(evidence: Evidence, dataset: str, metric: str, variant: str, other: str, level: str) -> pd.Series:
    table = evidence.level_table(dataset, metric)
    if level not in table.columns:
        return pd.Series(dtype="float64")
    mine, theirs = table.loc[variant, level], table.loc[other, level]
    return (mine - theirs).dropna()


def best_in_domain(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """The first variant beats every other in-domain; value: its smallest lead."""
    subject, *others = claim.variants
    effects = {o: _level_effects(evidence, dataset, claim.metric, subject, o, "in_domain") for o in others}
    found, corrected = _holm_effects(list(effects.values()))
    summaries, adjusted = dict(zip(others, found, strict=True)), dict(zip(others, corrected, strict=True))
    listed = "; ".join(f"vs {o}: {_interval(e, percent=False)} (p_holm {adjusted[o]:.2g})" for o, e in effects.items())
    lead = float(min(s.mean for s in summaries.values()))
    if all(adjusted[o] <= evidence.level and summaries[o].mean > 0 for o in others):
        return Finding(SUPPORTS, lead, listed)
    beaten = [o for o in others if adjusted[o] <= evidence.level and summaries[o].mean < 0]
    tied = [o for o in others if equivalence(effects[o], claim.margin, evidence.level).outcome == EQUIVALENT]
    if beaten or tied:
        return Finding(CONTRADICTS, lead, listed)
    return Finding(INCONCLUSIVE, lead, listed)


EQUAL_RULE = (
    "per seed, in-domain {c.metric} of {c.variants[0]} minus {c.baseline}'s (absolute); SUPPORTS when equivalent "
    "within +-{c.margin:.2f} (TOST, 5%), CONTRADICTS when outside it (one-sided t, 5%), else INCONCLUSIVE"
)


def performs_as_well(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """The variant performs as well as the baseline in-domain; value: the mean difference."""
    (variant,) = claim.variants
    effects = _level_effects(evidence, dataset, claim.metric, variant, claim.baseline, "in_domain")
    tested = equivalence(effects, claim.margin, evidence.level)
    measured = f"{variant} - {claim.baseline}: {_interval(effects, percent=False)}; TOST p {tested.p_equivalent:.2g}"
    value = float(effects.mean()) if len(effects) else np.nan
    verdicts = {EQUIVALENT: SUPPORTS, DIFFERENT: CONTRADICTS}
    return Finding(verdicts.get(tested.outcome, INCONCLUSIVE), value, measured)


DROP_RULE = (
    "per model, the relative drop (in-domain - {c.levels[0]}) / in-domain of {c.metric}; per seed, the variant's drop "
    "minus {c.baseline}'s; SUPPORTS when positive and significant (t-test on seeds, 5%), CONTRADICTS when negative "
    "and significant or equivalent within +-{c.margin:.0%} (TOST), else INCONCLUSIVE"
)


def drops_more(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """On the named test level the variant loses more than the baseline; value: the mean extra drop."""
    (variant,) = claim.variants
    (level,) = claim.levels
    table = evidence.level_table(dataset, claim.metric)
    if level not in table.columns:
        return inconclusive(f"no {level} test level on {dataset}")
    drop = (table["in_domain"] - table[level]) / table["in_domain"]
    extra = (drop.loc[variant] - drop.loc[claim.baseline]).dropna()
    measured = (
        f"drop on {level}: {drop.loc[variant].mean():.1%} ({variant}) vs {drop.loc[claim.baseline].mean():.1%} "
        f"({claim.baseline}); extra drop per seed {_interval(extra)}, p {seed_effect(extra).p_value:.2g}"
    )
    return _directional(extra, claim.margin, evidence.level, measured)


# --- the journal's counts ---------------------------------------------------------------------------------

GROUP_RULE = (
    "cases: (medical data set, test level in {c.levels}); per case the best member of each architecture group (by "
    "mean {c.metric}); per seed, No-Skip's best minus the best other group's; SUPPORTS when No-Skip is significantly "
    "better (t-test on seeds, 5%) in more than half the cases (paper: {c.paper_count}); CONTRADICTS when another "
    "group is significantly better in half of them or more; else INCONCLUSIVE"
)


JOURNAL_MEDICAL_DATASETS = 4  # BUSI, spleen, heart, GlaS: the journal's counts are over their harder levels


def _group_best(table: pd.Series, members: list[str], lower: bool) -> str:
    """The member with the best mean score ('' when none has one)."""
    means = table.groupby(level="variant").mean().reindex(members).dropna()
    if means.empty:
        return ""
    return str(means.idxmin() if lower else means.idxmax())


def group_best_on_levels(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """No-Skip is the best group on the harder levels of medical data; value: its share of significant wins."""
    lower = claim.metric in LOWER_IS_BETTER
    if claim.metric not in evidence.images or evidence.images[claim.metric].isna().all():
        return inconclusive(f"the study has no per-image {claim.metric}")
    cases, wins, losses, notes, used = 0, 0, 0, [], set()
    for name in evidence.level_datasets(medical=True):
        table = evidence.level_table(name, claim.metric)
        present = set(table.index.get_level_values("variant"))
        groups = {g: [v for v in sorted(present) if variant_group(v) == g] for g in VARIANT_GROUPS}
        groups = {g: members for g, members in groups.items() if members}
        if "No-Skip" not in groups or len(groups) < 2 or evidence.n_seeds(name, sorted(present)) < MIN_SEEDS:
            continue
        for level in [lv for lv in claim.levels if lv in table.columns]:
            best = {g: _group_best(table[level], members, lower) for g, members in groups.items()}
            rival = _group_best(table[level], [best[g] for g in groups if g != "No-Skip" and best[g]], lower)
            if not best["No-Skip"] or not rival:
                continue
            difference = (table[level].loc[best["No-Skip"]] - table[level].loc[rival]).dropna()
            effect = seed_effect(-difference if lower else difference)
            cases += 1
            used.add(name)
            won = effect.p_value <= evidence.level and effect.mean > 0
            lost = effect.p_value <= evidence.level and effect.mean < 0
            wins, losses = wins + won, losses + lost
            notes.append(f"{name} {level}: {best['No-Skip']} vs {rival} {effect.mean:+.3f} (p {effect.p_value:.2g})")
    if not cases:
        return inconclusive(
            f"no medical data set with the {', '.join(claim.levels)} levels, two architecture groups and "
            f"{MIN_SEEDS} seeds"
        )
    measured = (
        f"No-Skip significantly best in {wins}/{cases} cases, another group significantly better in {losses}/{cases} "
        f"(paper: No-Skip best in {claim.paper_count}); " + "; ".join(notes)
    )
    if len(used) < JOURNAL_MEDICAL_DATASETS:
        measured += (
            f"; {len(used)} of the journal's {JOURNAL_MEDICAL_DATASETS} data sets ({', '.join(sorted(used))}): the "
            f"verdict is the direction on these cases and cannot settle the paper's count of {claim.paper_count}"
        )
    if wins > cases / 2:
        return Finding(SUPPORTS, wins / cases, measured)
    if losses >= cases / 2:
        return Finding(CONTRADICTS, wins / cases, measured)
    return Finding(INCONCLUSIVE, wins / cases, measured)


COV_RULE = (
    "cases: each data set (and synthetic training alpha) with 2 or more test levels; per model, CoV = std / mean of "
    "its per-level mean Dice; a group's CoV is the mean of its members'; per case the group with the lowest CoV wins, "
    "significantly when its lead over the runner-up holds per seed (t-test, 5%); SUPPORTS when No-Skip wins the most "
    "cases with at least one significant win (paper: {c.paper_count}); CONTRADICTS when another group has more "
    "significant wins than No-Skip has wins; else INCONCLUSIVE"
)


def cov_ranking(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """The No-Skip group is the most robust by the CoV of Dice across test levels; value: its share of wins."""
    scores = evidence.level_scores("dice")
    cases, wins, significant, notes = 0, {}, {}, []
    for (name, alpha), block in scores.groupby(["dataset", "train_alpha"], dropna=False, sort=True):
        table = block.pivot_table(index=["variant", "seed"], columns="level", values="dice")
        if table.shape[1] < 2:
            continue
        per_model = (table.std(axis=1, ddof=0) / table.mean(axis=1)).rename("cov").reset_index()
        per_model["group"] = per_model["variant"].map(variant_group)
        per_model = per_model.dropna(subset=["group"])
        group_cov = per_model.groupby(["group", "seed"])["cov"].mean().unstack("seed")
        if len(group_cov) < 2 or group_cov.shape[1] < MIN_SEEDS:
            continue
        order = group_cov.mean(axis=1).sort_values()
        winner, runner = order.index[0], order.index[1]
        lead = seed_effect((group_cov.loc[runner] - group_cov.loc[winner]).dropna())
        cases += 1
        wins[winner] = wins.get(winner, 0) + 1
        if lead.p_value <= evidence.level and lead.mean > 0:
            significant[winner] = significant.get(winner, 0) + 1
        notes.append(
            f"{dataset_label(name, alpha)}: {winner} (CoV {order.iloc[0]:.3f} vs {runner} {order.iloc[1]:.3f})"
        )
    if not cases:
        return inconclusive(f"no case with 2 or more test levels, two architecture groups and {MIN_SEEDS} seeds")
    tally = ", ".join(f"{g} {wins.get(g, 0)} ({significant.get(g, 0)} significant)" for g in VARIANT_GROUPS)
    measured = f"lowest CoV in {cases} cases: {tally}; " + "; ".join(notes)
    mine = wins.get("No-Skip", 0)
    rivals = [g for g in VARIANT_GROUPS if g != "No-Skip"]
    if all(mine > wins.get(g, 0) for g in rivals) and significant.get("No-Skip", 0):
        return Finding(SUPPORTS, mine / cases, measured)
    if any(significant.get(g, 0) > mine for g in rivals):
        return Finding(CONTRADICTS, mine / cases, measured)
    return Finding(INCONCLUSIVE, mine / cases, measured)


def not_expressible(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """A sentence one slice of a study cannot test (the texture range): always INCONCLUSIVE with the reason."""
    return inconclusive(
        "it compares training sets of different texture ranges, and every model here trained at one range; a study "
        "that sweeps training.train_range checks it in its across-sweep report"
    )


SUBSET_BEST_RULE = (
    "per seed, in-domain {c.metric} of each skip subset (unet_skips_*) at each training alpha, the best subset per "
    "alpha by its mean; SUPPORTS when two alphas' best subsets cross, each significantly better than the other at "
    "its own alpha (one-sided paired t on seeds, Holm over the pairs of alphas, 5%); CONTRADICTS when one subset is "
    "best at every alpha and significantly better than the runner-up at each (Holm); else INCONCLUSIVE"
)


def _on_subsets(evidence: Evidence, decide, dataset: str = "all") -> Finding:
    """A UDTransNet verdict: ``decide(scores, level)`` on the skip subsets' seed-level scores (of one data set)."""
    scores = subset_scores(evidence.images)
    if dataset != "all":
        scores = scores[scores["dataset"] == dataset]
    if scores["variant"].nunique() < 2:
        return inconclusive("the study has fewer than two skip-subset variants (unet_skips_*)")
    verdict, measured = decide(scores, evidence.level)[:2]
    return Finding(verdict, np.nan, measured)


def best_subset_changes(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """UDTransNet's "optimal combinations ... are different", read across difficulty levels of one data set."""
    return _on_subsets(evidence, best_changes, dataset)


SUBSET_DATASETS_RULE = (
    "per seed, in-domain {c.metric} of each skip subset (unet_skips_*) on each data set (each synthetic training "
    "alpha a task of its own), the best subset per task by its mean; SUPPORTS when two tasks of different data sets "
    "have best subsets that cross, each significantly better than the other on its own task (one-sided paired t on "
    "seeds, Holm over those pairs, 5%); CONTRADICTS when one subset is best on every task and significantly better "
    "than the runner-up on each (Holm); else INCONCLUSIVE"
)


def best_subset_between_datasets(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """UDTransNet's "optimal combinations ... are different, relying on the specific datasets", between data sets."""
    return _on_subsets(evidence, best_between_datasets)


CONTRIBUTION_RULE = (
    "per seed, each skip's contribution: the mean in-domain {c.metric} over the alphas of the subsets that keep it "
    "minus that of the subsets that drop it (all 2^k subsets needed); SUPPORTS when two skips' contributions differ "
    "(paired t on seeds, Holm over the pairs, 5%); CONTRADICTS when every pair is equivalent within "
    f"+-{CONTRIBUTION_MARGIN} Dice (TOST); else INCONCLUSIVE"
)


def skips_contribute_differently(claim: Claim, evidence: Evidence, dataset: str) -> Finding:
    """UDTransNet's "each skip connection has different contribution", on one data set's skip subsets."""
    return _on_subsets(evidence, contributions_differ, dataset)


KINDS: dict[str, Kind] = {
    "parity_above": Kind(parity_above, PARITY_RULE),
    "gain_below": Kind(gain_below, GAIN_RULE),
    "gain_exceeds": Kind(gain_exceeds, EXCEEDS_RULE),
    "noisier_across_seeds": Kind(noisier_across_seeds, SPREAD_RULE),
    "noisier_curve": Kind(noisier_curve, JAGGED_RULE),
    "named_cells": Kind(named_cells, CELLS_RULE),
    "harm_exists": Kind(harm_exists, HARM_RULE),
    "best_in_domain": Kind(best_in_domain, BEST_RULE, scope="medical"),
    "performs_as_well": Kind(performs_as_well, EQUAL_RULE, scope="medical"),
    "drops_more": Kind(drops_more, DROP_RULE, scope="medical"),
    "group_best_on_levels": Kind(group_best_on_levels, GROUP_RULE, scope="study"),
    "cov_ranking": Kind(cov_ranking, COV_RULE, scope="study"),
    "best_subset_changes": Kind(best_subset_changes, SUBSET_BEST_RULE, named=False),
    "best_subset_between_datasets": Kind(
        best_subset_between_datasets, SUBSET_DATASETS_RULE, scope="study", named=False
    ),
    "skips_contribute_differently": Kind(skips_contribute_differently, CONTRIBUTION_RULE, scope="any", named=False),
    "not_expressible": Kind(
        not_expressible, "not checked within one slice: see the across-sweep report", scope="study", seeds=False
    ),
}
