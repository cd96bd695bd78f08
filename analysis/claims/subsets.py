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
from analysis.frames import dataset_label, format_number
from analysis.statistics.paired import holm
from analysis.statistics.seeds import EQUIVALENT, MIN_SEEDS, equivalence, seed_effect, seed_p
from analysis.tables.relative import seed_level_scores
from trainables.schema import SKIP_SUBSET_PREFIX, is_skip_subset

CONTRIBUTION_MARGIN = 0.02  # absolute Dice: two skips whose contributions differ by less contribute alike


def subset_scores(images: pd.DataFrame, also: tuple[str, ...] = ()) -> pd.DataFrame:
    """In-domain Dice per (dataset, skip-subset variant, train_alpha, seed): the mean over the model's test images.

    A medical data set has no training alpha (NaN): its in-domain Dice is the mean over its ``in_domain`` test level.
    ``also`` adds other variants (``udtransnet``) to compare with the subsets.
    """
    columns = ["dataset", "variant", "train_alpha", "seed", "dice"]
    subsets = images[images["variant"].map(is_skip_subset).astype(bool) | images["variant"].isin(also)]
    frames = []
    if subsets["train_alpha"].notna().any():
        scores = seed_level_scores(subsets[subsets["train_alpha"].notna()])
        in_domain = scores[np.isclose(scores["train_alpha"], scores["test_alpha"])]
        frames.append(in_domain[columns].reset_index(drop=True))
    medical = subsets[subsets["train_alpha"].isna() & (subsets["condition"] == "in_domain")]
    if not medical.empty:
        means = medical.groupby(["dataset", "variant", "seed"])["dice"].mean().reset_index()
        frames.append(means.assign(train_alpha=np.nan)[columns])
    if not frames:
        return pd.DataFrame({column: [] for column in columns})
    return pd.concat(frames, ignore_index=True)


def subset_drops(images: pd.DataFrame) -> pd.DataFrame:
    """Out-of-domain drop per (dataset, skip-subset variant, train_alpha, seed): the model's in-domain Dice minus its
    mean Dice over the study's other test levels (``harder``, ``easier``, ...: its own alpha's test images,
    perturbed), each the mean over the test images. Column ``drop``; larger is less robust."""
    columns = ["dataset", "variant", "train_alpha", "seed", "drop"]
    subsets = images[images["variant"].map(is_skip_subset).astype(bool) & images["test_alpha"].isna()]
    if subsets.empty or not (subsets["condition"] == "in_domain").any() or subsets["condition"].nunique() < 2:
        return pd.DataFrame({column: [] for column in columns})
    keys = ["dataset", "variant", "train_alpha", "seed"]
    means = subsets.groupby([*keys, "condition"], dropna=False)["dice"].mean().unstack("condition")
    others = [condition for condition in means.columns if condition != "in_domain"]
    drops = (means["in_domain"] - means[others].mean(axis=1)).rename("drop").reset_index()
    return drops[columns]


def best_changes(scores: pd.DataFrame, level: float = 0.05) -> tuple[str, str]:
    """The verdict on "the best subset changes with difficulty" for one data set, and what was measured."""
    alphas = sorted(scores["train_alpha"].dropna().unique())
    if scores["train_alpha"].isna().all() and not scores.empty:
        return INCONCLUSIVE, "a medical data set has one difficulty level (no training alpha) to compare subsets across"
    wide = {f"alpha {a:g}": by_seed(scores[scores["train_alpha"] == a]) for a in alphas}
    if len(alphas) < 2 or min(len(w.dropna()) for w in wide.values()) < MIN_SEEDS:
        return INCONCLUSIVE, f"needs 2+ alphas and {MIN_SEEDS}+ seeds per subset"
    return _best_across(wide, list(itertools.combinations(wide, 2)), level, "alpha", "alphas")


def best_between_datasets(scores: pd.DataFrame, level: float = 0.05) -> tuple[str, str]:
    """UDTransNet's "the optimal combinations ... are different, relying on the specific datasets", read literally:
    between the study's data sets (each synthetic training alpha a task of its own; only pairs of tasks from two
    different data sets count). The same rule as :func:`best_changes`."""
    tasks, owner = {}, {}
    for (dataset, alpha), cell in scores.groupby(["dataset", "train_alpha"], dropna=False, sort=True):
        label = dataset_label(str(dataset), alpha)
        tasks[label], owner[label] = by_seed(cell), dataset
    if len(set(owner.values())) < 2:
        return INCONCLUSIVE, "needs skip subsets trained on 2+ data sets"
    if min(len(w.dropna()) for w in tasks.values()) < MIN_SEEDS:
        return INCONCLUSIVE, f"needs {MIN_SEEDS}+ seeds per subset on each data set"
    pairs = [(a, b) for a, b in itertools.combinations(tasks, 2) if owner[a] != owner[b]]
    return _best_across(tasks, pairs, level, "data set", "data sets")


def by_seed(cell: pd.DataFrame) -> pd.DataFrame:
    """Seeds x subsets of one task's in-domain Dice."""
    return cell.pivot(index="seed", columns="variant", values="dice")


def _best_across(
    wide: dict[str, pd.DataFrame], pairs: list[tuple[str, str]], level: float, task: str, tasks: str
) -> tuple[str, str]:
    """SUPPORTS when two tasks' best subsets cross, each significantly better than the other on its own task (the
    larger one-sided paired p of the two, Holm over the ``pairs`` whose best subsets differ); CONTRADICTS when one
    subset is best on every task and significantly better than the runner-up on each (Holm); else INCONCLUSIVE."""
    best = {name: frame.mean().idxmax() for name, frame in wide.items()}
    crossings = [(a, b) for a, b in pairs if best[a] != best[b]]
    if crossings:
        p_values = [
            max(paired_p(wide[a][best[a]], wide[a][best[b]], True), paired_p(wide[b][best[b]], wide[b][best[a]], True))
            for a, b in crossings
        ]
        adjusted = holm(p_values)
        crossing = int(np.nanargmin(adjusted))
        a, b = crossings[crossing]
        text = (
            f"best at {a}: {best[a]}, at {b}: {best[b]}; that each beats the other at its own "
            f"{task} has Holm p = {format_number(adjusted[crossing], 3)}, the smallest over {len(crossings)} pair(s) "
            f"of {tasks} whose best subsets differ"
        )
        return (SUPPORTS if adjusted[crossing] <= level else INCONCLUSIVE), text
    names = list(dict.fromkeys(name for pair in pairs for name in pair))
    winner = best[names[0]]
    runners = {name: wide[name].mean().drop(winner).idxmax() for name in names}
    p_values = holm([paired_p(wide[name][winner], wide[name][runners[name]], True) for name in names])
    text = f"{winner} is best at every {task}; against the runner-up, Holm p = " + ", ".join(
        f"{format_number(p, 3)} ({name}, {runners[name]})" for name, p in zip(names, p_values, strict=True)
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
