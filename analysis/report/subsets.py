"""Which skips, at which difficulty: the report's section on skip-subset variants (``unet_skips_0111``).

UDTransNet (Wang et al. 2024) found that "the optimal combinations of skip connections are different,
relying on the specific datasets"; here the question is whether they differ between task difficulties
(training alphas). With the trained model as the unit (one in-domain Dice per seed, the mean over its test
images):

- a subset x alpha table of in-domain Dice, mean and 95% t interval over seeds, the best subset per alpha
  marked, and the subsets a paired seed-level t-test cannot tell from it (Holm over the subsets of that alpha);
- a heatmap of the same;
- the verdict on "the best subset changes with difficulty": SUPPORTS when two alphas' best subsets cross,
  each significantly better than the other at its own alpha (paired seed-level t-tests, Holm over the pairs
  of alphas); CONTRADICTS when one subset is best at every alpha and significantly better than the runner-up
  at each; INCONCLUSIVE otherwise. The best subsets are chosen on the same data they are tested on, which
  favours a crossing: read a SUPPORTS with few seeds as a lead, not a finding.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.claims import CONTRADICTS, INCONCLUSIVE, SUPPORTS
from analysis.report.formatting import format_number
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


def drop_table(drops: pd.DataFrame, level: float = 0.05) -> pd.DataFrame:
    """:func:`subset_table` of the drops: ``best`` is the smallest drop (the most robust subset) per alpha."""
    table = subset_table(drops.assign(dice=-drops["drop"]), level)
    low, high = -table["ci_high"], -table["ci_low"]
    return table.assign(mean=-table["mean"], ci_low=low, ci_high=high)


def subset_table(scores: pd.DataFrame, level: float = 0.05) -> pd.DataFrame:
    """One data set's subsets x alphas: ``mean``, ``ci_low``, ``ci_high``, ``best`` and ``tied`` per cell.

    ``tied`` marks the subsets a paired seed-level t-test against the best (same seeds) cannot tell apart
    from it at ``level`` after Holm over the other subsets of that alpha (the best is tied with itself).
    """
    rows = []
    for alpha, cell in scores.groupby("train_alpha"):
        wide = cell.pivot(index="seed", columns="variant", values="dice")
        means = wide.mean()
        best = means.idxmax()
        others = [v for v in wide.columns if v != best]
        p_values = [_paired_p(wide[best], wide[v]) for v in others]
        adjusted = dict(zip(others, holm(p_values), strict=True)) if others else {}
        for variant in wide.columns:
            effect = seed_effect(wide[variant].to_numpy())
            tied = variant == best or not (adjusted.get(variant, np.nan) <= level)
            rows.append(
                {
                    "variant": variant,
                    "train_alpha": alpha,
                    "mean": effect.mean,
                    "ci_low": effect.ci_low,
                    "ci_high": effect.ci_high,
                    "n_seeds": effect.n_seeds,
                    "best": variant == best,
                    "tied": tied,
                }
            )
    return pd.DataFrame(rows)


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
            max(
                _paired_p(wide[a][best[a]], wide[a][best[b]], True), _paired_p(wide[b][best[b]], wide[b][best[a]], True)
            )
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
    p_values = holm([_paired_p(wide[a][winner], wide[a][runners[a]], True) for a in alphas])
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


def plot_subsets(table: pd.DataFrame, dataset: str, drops: bool = False) -> Figure:
    """Subsets (rows) x training alpha (columns): each cell's mean in-domain Dice (or, ``drops``, its out-of-domain
    drop) written in it, coloured by how far it is from the best subset of that alpha (so the ranking within each
    alpha shows, whatever the alpha's overall level); * the best per alpha, = not distinguishable from it."""
    matrix = table.pivot(index="variant", columns="train_alpha", values="mean")
    marks = table.pivot(index="variant", columns="train_alpha", values="best")
    tied = table.pivot(index="variant", columns="train_alpha", values="tied")
    values = matrix.to_numpy(dtype="float64")
    # distance from the alpha's best subset, >= 0: Dice below the best, or drop above the smallest
    distance = (
        (values - np.nanmin(values, axis=0, keepdims=True))
        if drops
        else (np.nanmax(values, axis=0, keepdims=True) - values)
    )
    figure = Figure(figsize=(2.4 + 0.9 * matrix.shape[1], 1.8 + 0.3 * matrix.shape[0]))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    high = max(float(np.nanmax(distance)), 1e-3)
    image = axes.imshow(distance, cmap="viridis_r", vmin=0.0, vmax=high, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        mark = "*" if marks.iat[row, column] else ("=" if tied.iat[row, column] else "")
        colour = "black" if distance[row, column] < high / 2 else "white"
        axes.text(column, row, f"{value:.2f}{mark}", ha="center", va="center", fontsize=7, color=colour)
    axes.set_xticks(range(matrix.shape[1]), [f"{a:g}" for a in matrix.columns])
    axes.set_yticks(range(matrix.shape[0]), [v.removeprefix("unet_skips_") for v in matrix.index])
    axes.set_xlabel("trained (and tested in-domain) at alpha")
    axes.set_ylabel("skips kept\n(shallowest first)")
    what = "out-of-domain drop (in-domain minus test levels)" if drops else "in-domain Dice"
    best = "smallest drop" if drops else "best"
    axes.set_title(
        f"{dataset}: {what} per skip subset (mean over seeds)\n* {best} per alpha, = not distinguishable from it",
        fontsize=9,
    )
    figure.colorbar(image, ax=axes, label="drop above the alpha's smallest" if drops else "Dice below the alpha's best")
    figure.tight_layout()
    return figure


def subsets_section(writer, images: pd.DataFrame, level: float = 0.05) -> str | None:
    """The report's "Skip subsets" section (tables, figure, verdict per data set); None without 2+ subsets."""
    scores = subset_scores(images)
    if scores["variant"].nunique() < 2:
        return None
    drops = subset_drops(images)
    parts = [
        "## Skip subsets: does the best subset change with difficulty?\n",
        "In-domain Dice of each skip subset (`unet_skips_<flags>`: 1 = the level's skip kept, shallowest first), "
        "mean and 95% t interval over seeds (each seed a trained model); **bold** the best per alpha, = the subsets "
        "a paired seed-level t-test (Holm over that alpha's subsets) cannot tell from it.\n",
    ]
    for dataset, sub in scores.groupby("dataset"):
        table = subset_table(sub, level)
        link = writer.csv(f"skip_subsets_{dataset}.csv", table)
        verdict, measured = best_changes(sub, level)
        parts.append(f"### {dataset}\n")
        parts.append(f"**The best subset changes with difficulty: {verdict}.** {measured}.\n")
        parts += _contributions_part(writer, sub, str(dataset), level)
        parts.append(_markdown(table) + f"\n\n([CSV]({link}))\n")
        writer.figure(plot_subsets(table, str(dataset)), f"skip_subsets_{dataset}", f"{dataset}: skip subsets x alpha")
        parts.append(writer.sections.pop())
        parts += _drops_part(writer, drops[drops["dataset"] == dataset], str(dataset), level)
    return "\n".join(parts) + "\n"


def _contributions_part(writer, scores: pd.DataFrame, dataset: str, level: float) -> list[str]:
    """UDTransNet's "each skip connection has different contribution" for one data set: verdict and table."""
    verdict, measured, table = contributions_differ(scores, level)
    lines = [f"**Each skip contributes differently (UDTransNet): {verdict}.** {measured}.\n"]
    if table is not None:
        link = writer.csv(f"skip_contributions_{dataset}.csv", table)
        interval = [f"[{format_number(r.ci_low, 3)}, {format_number(r.ci_high, 3)}]" for r in table.itertuples()]
        rows = [f"| {r.skip} | {r.contribution:+.3f} {i} |" for r, i in zip(table.itertuples(), interval, strict=True)]
        lines.append(
            "A skip's contribution: the mean in-domain Dice (over the alphas) of the subsets that keep it minus that "
            "of the subsets that drop it, per seed; mean and 95% t interval over seeds (skip 1 is the shallowest).\n"
        )
        lines.append("| skip | contribution |\n|---|---|\n" + "\n".join(rows) + f"\n\n([CSV]({link}))\n")
    return lines


def _drops_part(writer, drops: pd.DataFrame, dataset: str, level: float) -> list[str]:
    """The out-of-domain half of one data set's subsets: table, figure, verdict ([] without test levels)."""
    if drops["variant"].nunique() < 2:
        return []
    table = drop_table(drops, level)
    link = writer.csv(f"skip_subsets_ood_drop_{dataset}.csv", table)
    verdict, measured = best_changes(drops.assign(dice=-drops["drop"]), level)
    measured = measured.replace("best", "most robust")
    writer.figure(
        plot_subsets(table, dataset, drops=True),
        f"skip_subsets_ood_drop_{dataset}",
        f"{dataset}: out-of-domain drop per skip subset x alpha",
    )
    return [
        f"#### {dataset}: out-of-domain drop\n",
        "Each model's in-domain Dice minus its mean Dice at the study's other test levels (its own alpha's test "
        "images perturbed), mean and 95% t interval over seeds; **bold** the smallest drop per alpha (the most "
        "robust subset), = the subsets a paired seed-level t-test cannot tell from it.\n",
        f"**The most robust subset changes with difficulty: {verdict}.** {measured}.\n",
        _markdown(table) + f"\n\n([CSV]({link}))\n",
        writer.sections.pop(),
    ]


def _markdown(table: pd.DataFrame) -> str:
    alphas = sorted(table["train_alpha"].unique())
    lines = ["| skips kept | " + " | ".join(f"alpha {a:g}" for a in alphas) + " |", "|---" * (len(alphas) + 1) + "|"]
    for variant, rows in table.groupby("variant", sort=True):
        cells = []
        for alpha in alphas:
            row = rows[rows["train_alpha"] == alpha].iloc[0]
            text = f"{row['mean']:.3f} [{format_number(row['ci_low'], 3)}, {format_number(row['ci_high'], 3)}]"
            cells.append(f"**{text}**" if row["best"] else (f"= {text}" if row["tied"] else text))
        lines.append(f"| {variant.removeprefix('unet_skips_')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paired_p(better: pd.Series, other: pd.Series, one_sided: bool = False) -> float:
    """p of a paired t-test over seeds (both defined), two-sided or that ``better`` is larger."""
    both = pd.concat([better, other], axis=1).dropna()
    return seed_p((both.iloc[:, 0] - both.iloc[:, 1]).to_numpy(), "greater" if one_sided else "two-sided")
