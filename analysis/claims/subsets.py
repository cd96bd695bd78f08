"""UDTransNet's sentences on skip connections, checked on a study of skip-subset variants (``unet_skips_0111``).

Wang et al. (2024) found that "not all skip connections are useful, each skip connection has different
contribution" and that "the optimal combinations of skip connections are different, relying on the specific
datasets". A sweep over difficulty asks the second across task difficulties (training alphas) instead of data
sets. With the trained model as the unit (one in-domain Dice per seed, the mean over its test images):

- the best subset changes with difficulty: SUPPORTS when two alphas' best subsets cross, each significantly better
  than the other at its own alpha (paired seed-level t-tests, Holm over the pairs of alphas); CONTRADICTS when one
  subset is best at every alpha and significantly better than the runner-up at each; INCONCLUSIVE otherwise. The
  best subsets are chosen on the same data they are tested on, which favours a crossing: read a SUPPORTS with few
  seeds as a lead, not a finding;
- each skip contributes differently: a skip's contribution is the main effect of keeping it in the 2^k factorial
  design of all subsets; SUPPORTS when two skips' contributions differ (paired t over seeds, Holm over the pairs),
  CONTRADICTS when every pair is equivalent within +-:data:`CONTRIBUTION_MARGIN` Dice (TOST), else INCONCLUSIVE.

The report's "Skip subsets" section (:mod:`analysis.report.subsets`) shows the tables behind both; the claims
table (:mod:`analysis.claims.checks`, kinds ``best_subset_changes`` and ``skips_contribute_differently``) lists
the verdicts with the other papers'.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from analysis.claims.model import CONTRADICTS, INCONCLUSIVE, SUPPORTS
from analysis.frames import format_number
from analysis.statistics.paired import holm
from analysis.statistics.seeds import EQUIVALENT, MIN_SEEDS, equivalence, seed_effect, seed_p
from analysis.tables.relative import seed_level_scores
from trainables.schema import SKIP_SUBSET_PREFIX, is_skip_subset

CONTRIBUTION_MARGIN = 0.02  # absolute Dice: two skips whose contributions differ by less contribute alike


def subset_scores(images: pd.DataFrame) -> pd.DataFrame:
    """In-domain Dice per (dataset, skip-subset variant, train_alpha, seed): the mean over the model's test images."""
    columns = ["dataset", "variant", "train_alpha", "seed", "dice"]
    if not images["variant"].map(is_skip_subset).astype(bool).any():
        return pd.DataFrame({column: [] for column in columns})  # (a medical-only study has no alpha either)
    scores = seed_level_scores(images)
    scores = scores[scores["variant"].map(is_skip_subset).astype(bool)]
    in_domain = scores[np.isclose(scores["train_alpha"], scores["test_alpha"])]
    return in_domain[columns].reset_index(drop=True)


def subset_drops(images: pd.DataFrame) -> pd.DataFrame:
    """Out-of-domain drop per (dataset, skip-subset variant, train_alpha, seed): the model's in-domain Dice minus its
    mean Dice over the study's other test levels (``harder``, ``easier``, ...: its own alpha's test images,
    perturbed), each the mean over the test images. Column ``drop``; larger is less robust."""
    columns = ["dataset", "variant", "train_alpha", "seed", "drop"]
    subsets = images[images["variant"].map(is_skip_subset).astype(bool) & images["test_alpha"].isna()]
    if subsets.empty or not (subsets["condition"] == "in_domain").any() or subsets["condition"].nunique() < 2:
        return pd.DataFrame({column: [] for column in columns})
    keys = ["dataset", "variant", "train_alpha", "seed"]
    means = subsets.groupby([*keys, "condition"])["dice"].mean().unstack("condition")
    others = [condition for condition in means.columns if condition != "in_domain"]
    drops = (means["in_domain"] - means[others].mean(axis=1)).rename("drop").reset_index()
    return drops[columns]


def best_changes(scores: pd.DataFrame, level: float = 0.05) -> tuple[str, str]:
    """The verdict on "the best subset changes with difficulty" for one data set, and what was measured."""
    alphas = sorted(scores["train_alpha"].unique())
    wide = {a: scores[scores["train_alpha"] == a].pivot(index="seed", columns="variant", values="dice") for a in alphas}
    if len(alphas) < 2 or min(len(w.dropna()) for w in wide.values()) < MIN_SEEDS:
        return INCONCLUSIVE, f"needs 2+ alphas and {MIN_SEEDS}+ seeds per subset"
    best = {a: wide[a].mean().idxmax() for a in alphas}
    pairs = [(a, b) for a, b in itertools.combinations(alphas, 2) if best[a] != best[b]]
    if pairs:
        # a crossing: at a, best[a] beats best[b]; at b, best[b] beats best[a] (the larger one-sided p decides)
        p_values = [
            max(paired_p(wide[a][best[a]], wide[a][best[b]], True), paired_p(wide[b][best[b]], wide[b][best[a]], True))
            for a, b in pairs
        ]
        adjusted = holm(p_values)
        crossing = int(np.nanargmin(adjusted))
        a, b = pairs[crossing]
        text = (
            f"best at alpha {a:g}: {best[a]}, at alpha {b:g}: {best[b]}; that each beats the other at its own "
            f"alpha has Holm p = {format_number(adjusted[crossing], 3)}, the smallest over {len(pairs)} pair(s) of "
            "alphas whose best subsets differ"
        )
        return (SUPPORTS if adjusted[crossing] <= level else INCONCLUSIVE), text
    winner = best[alphas[0]]
    runners = {a: wide[a].mean().drop(winner).idxmax() for a in alphas}
    p_values = holm([paired_p(wide[a][winner], wide[a][runners[a]], True) for a in alphas])
    text = f"{winner} is best at every alpha; against the runner-up, Holm p = " + ", ".join(
        f"{format_number(p, 3)} (alpha {a:g}, {runners[a]})" for a, p in zip(alphas, p_values, strict=True)
    )
    return (CONTRADICTS if np.nanmax(p_values) <= level else INCONCLUSIVE), text


def skip_contributions(scores: pd.DataFrame) -> pd.DataFrame | None:
    """Each skip's contribution per seed: the mean in-domain Dice (over the alphas) of the subsets that keep it minus
    that of the subsets that drop it (the main effect of a 2^k factorial design). Rows: seeds; columns: the skip
    levels, shallowest first (``skip 1`` ...). None unless every subset of the depth is there (a partial set of
    subsets would confound the skips with each other)."""
    means = scores.groupby(["variant", "seed"])["dice"].mean().unstack("seed")
    flags = {variant: variant.removeprefix(SKIP_SUBSET_PREFIX) for variant in means.index}
    depths = {len(flag) for flag in flags.values()}
    if len(depths) != 1 or len(flags) != 2 ** next(iter(depths)):
        return None
    columns = {}
    for level in range(next(iter(depths))):
        kept = [variant for variant, flag in flags.items() if flag[level] == "1"]
        dropped = [variant for variant, flag in flags.items() if flag[level] == "0"]
        columns[f"skip {level + 1}"] = means.loc[kept].mean() - means.loc[dropped].mean()
    return pd.DataFrame(columns)


def contributions_differ(scores: pd.DataFrame, level: float = 0.05) -> tuple[str, str, pd.DataFrame | None]:
    """UDTransNet's "each skip connection has different contribution", for one data set: the verdict, what was
    measured, and the per-skip contributions (mean and 95% t interval over seeds).

    SUPPORTS when two skips' contributions differ (paired seed-level t-test, Holm over the pairs); CONTRADICTS
    when every pair is equivalent within +-CONTRIBUTION_MARGIN Dice (TOST); INCONCLUSIVE otherwise.
    """
    per_seed = skip_contributions(scores)
    if per_seed is None:
        return INCONCLUSIVE, "needs every subset of the skips (unet_skips_*) to separate the skips' contributions", None
    per_seed = per_seed.dropna()
    rows = []
    for skip in per_seed.columns:
        effect = seed_effect(per_seed[skip].to_numpy())
        rows.append({"skip": skip, "contribution": effect.mean, "ci_low": effect.ci_low, "ci_high": effect.ci_high})
    table = pd.DataFrame(rows)
    if len(per_seed) < MIN_SEEDS:
        return INCONCLUSIVE, f"needs {MIN_SEEDS}+ seeds per subset", table
    pairs = list(itertools.combinations(per_seed.columns, 2))
    differences = [per_seed[a] - per_seed[b] for a, b in pairs]
    adjusted = holm([seed_effect(d.to_numpy()).p_value for d in differences])
    smallest = int(np.nanargmin(adjusted))
    a, b = pairs[smallest]
    if adjusted[smallest] <= level:
        return SUPPORTS, f"{a} and {b} contribute differently (Holm p = {format_number(adjusted[smallest], 3)})", table
    equal = [equivalence(d.to_numpy(), CONTRIBUTION_MARGIN, level).outcome == EQUIVALENT for d in differences]
    if all(equal):
        return CONTRADICTS, f"every pair of skips contributes alike within +-{CONTRIBUTION_MARGIN} Dice (TOST)", table
    return (
        INCONCLUSIVE,
        f"no pair differs significantly (smallest Holm p = {format_number(adjusted[smallest], 3)}, {a} vs {b}) and "
        f"{len(equal) - sum(equal)} of {len(equal)} pairs are not shown equal within +-{CONTRIBUTION_MARGIN} Dice",
        table,
    )


def paired_p(better: pd.Series, other: pd.Series, one_sided: bool = False) -> float:
    """p of a paired t-test over seeds (both defined), two-sided or that ``better`` is larger."""
    both = pd.concat([better, other], axis=1).dropna()
    return seed_p((both.iloc[:, 0] - both.iloc[:, 1]).to_numpy(), "greater" if one_sided else "two-sided")
