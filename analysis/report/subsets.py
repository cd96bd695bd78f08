"""Which skips, at which difficulty: the report's section on skip-subset variants (``unet_skips_0111``).

UDTransNet (Wang et al. 2024) found that "the optimal combinations of skip connections are different,
relying on the specific datasets"; here the question is whether they differ between task difficulties
(training alphas). With the trained model as the unit (one in-domain Dice per seed, the mean over its test
images):

- a subset x alpha table of in-domain Dice, mean and 95% t interval over seeds, the best subset per alpha
  marked, and the subsets a paired seed-level t-test cannot tell from it (Holm over the subsets of that alpha);
- a heatmap of the same;
- the verdicts on "the best subset changes with difficulty" (in-domain Dice, and out-of-domain drop) and on
  "each skip contributes differently", whose rules :mod:`analysis.claims.subsets` states; the first and the last
  are also rows of the claims table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.claims.subsets import (
    best_between_datasets,
    best_changes,
    by_seed,
    contributions_differ,
    paired_p,
    subset_drops,
    subset_scores,
)
from analysis.frames import dataset_label
from analysis.report.formatting import format_number
from analysis.statistics.paired import holm
from analysis.statistics.seeds import seed_effect
from trainables.schema import SKIP_SUBSET_PREFIX, is_skip_subset

LEARNED_SKIPS = ("udtransnet",)  # variants whose skips are learned: compared with the best fixed subset


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
    for alpha, cell in scores.groupby("train_alpha", dropna=False):
        wide = by_seed(cell)
        means = wide.mean()
        best = means.idxmax()
        others = [v for v in wide.columns if v != best]
        p_values = [paired_p(wide[best], wide[v]) for v in others]
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


def plot_subsets(table: pd.DataFrame, dataset: str, drops: bool = False) -> Figure:
    """Subsets (rows) x training alpha (columns): each cell's mean in-domain Dice (or, ``drops``, its out-of-domain
    drop) written in it, coloured by how far it is from the best subset of that alpha (so the ranking within each
    alpha shows, whatever the alpha's overall level); * the best per alpha, = not distinguishable from it."""
    table = table.assign(level=table["train_alpha"].map(_level_name))
    order = [_level_name(a) for a in sorted(table["train_alpha"].unique())]
    matrix, marks, tied = (
        table.pivot(index="variant", columns="level", values=v)[order] for v in ("mean", "best", "tied")
    )
    values = matrix.to_numpy(dtype="float64")
    # distance from the alpha's best subset, >= 0: Dice below the best, or drop above the smallest
    distance = (
        (values - np.nanmin(values, axis=0, keepdims=True))
        if drops
        else (np.nanmax(values, axis=0, keepdims=True) - values)
    )
    figure = Figure(figsize=(max(5.6, 2.4 + 0.9 * matrix.shape[1]), 1.8 + 0.3 * matrix.shape[0]))  # room for the title
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    high = max(float(np.nanmax(distance)), 1e-3)
    image = axes.imshow(distance, cmap="viridis_r", vmin=0.0, vmax=high, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        mark = "*" if marks.iat[row, column] else ("=" if tied.iat[row, column] else "")
        colour = "black" if distance[row, column] < high / 2 else "white"
        axes.text(column, row, f"{value:.2f}{mark}", ha="center", va="center", fontsize=7, color=colour)
    axes.set_xticks(range(matrix.shape[1]), [a.removeprefix("alpha ") for a in matrix.columns])
    axes.set_yticks(range(matrix.shape[0]), [v.removeprefix("unet_skips_") for v in matrix.index])
    medical = table["train_alpha"].isna().all()
    axes.set_xlabel("tested in-domain (no training alpha)" if medical else "trained (and tested in-domain) at alpha")
    axes.set_ylabel("skips kept\n(shallowest first)")
    what = "out-of-domain drop (in-domain minus test levels)" if drops else "in-domain Dice"
    best = "smallest drop" if drops else "best"
    per, the = ("", "the") if medical else (" per alpha", "the alpha's")
    axes.set_title(
        f"{dataset}: {what}\nper skip subset, mean over seeds; * {best}{per}, = not distinguishable from it",
        fontsize=9,
    )
    figure.colorbar(image, ax=axes, label=f"drop above {the} smallest" if drops else f"Dice below {the} best")
    figure.tight_layout()
    return figure


def subsets_section(writer, images: pd.DataFrame, level: float = 0.05) -> str | None:
    """The report's "Skip subsets" section (tables, figure, verdict per data set); None without 2+ subsets."""
    with_learned = subset_scores(images, also=LEARNED_SKIPS)
    scores = with_learned[with_learned["variant"].map(is_skip_subset).astype(bool)]
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
    parts += _learned_part(writer, with_learned, level)
    if scores["dataset"].nunique() > 1:
        verdict, measured = best_between_datasets(scores, level)
        parts.append("### Between data sets\n")
        parts.append(
            f"**The best subset differs between data sets (UDTransNet's own reading): {verdict}.** {measured}.\n"
        )
    return "\n".join(parts) + "\n"


def learned_table(scores: pd.DataFrame, level: float = 0.05) -> pd.DataFrame:
    """Each learned-skip variant (:data:`LEARNED_SKIPS`) against the best fixed subset of each data set and alpha:
    per seed, its in-domain Dice minus the best subset's (same seed); mean, 95% t interval, t-test p and Holm over
    the rows of one variant. The best subset is picked on the same scores, which favours it."""
    rows = []
    for (dataset, alpha), cell in scores.groupby(["dataset", "train_alpha"], dropna=False, sort=True):
        wide = by_seed(cell)
        fixed = [variant for variant in wide.columns if is_skip_subset(variant)]
        for learned in (variant for variant in LEARNED_SKIPS if variant in wide.columns and fixed):
            best = wide[fixed].mean().idxmax()
            effect = seed_effect((wide[learned] - wide[best]).to_numpy())
            rows.append(
                {
                    "dataset": dataset,
                    "variant": learned,
                    "train_alpha": alpha,
                    "dice": wide[learned].mean(),
                    "best_subset": best,
                    "best_subset_dice": wide[best].mean(),
                    "difference": effect.mean,
                    "ci_low": effect.ci_low,
                    "ci_high": effect.ci_high,
                    "n_seeds": effect.n_seeds,
                    "p": effect.p_value,
                }
            )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = table.groupby("variant")["p"].transform(lambda p: holm(p.tolist()))
        table["verdict"] = [
            ("better" if row.difference > 0 else "worse") if row.p_holm <= level else "not distinguishable"
            for row in table.itertuples()
        ]
    return table


def _learned_part(writer, scores: pd.DataFrame, level: float) -> list[str]:
    """Learned skips (UDTransNet) against the best fixed subset per data set and alpha ([] without them)."""
    table = learned_table(scores, level)
    if table.empty:
        return []
    link = writer.csv("learned_skips_vs_best_subset.csv", table)
    lines = [
        "| variant | data set | best fixed subset | its Dice | learned skips' Dice | difference [95% CI] | Holm p |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        interval = f"{row.difference:+.3f} [{format_number(row.ci_low, 3)}, {format_number(row.ci_high, 3)}]"
        lines.append(
            f"| {row.variant} | {dataset_label(str(row.dataset), row.train_alpha)} | "
            f"{row.best_subset.removeprefix(SKIP_SUBSET_PREFIX)} | {row.best_subset_dice:.3f} | {row.dice:.3f} | "
            f"{interval} | {format_number(row.p_holm, 3)} |"
        )
    counts = table["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("better", "worse", "not distinguishable"))
    return [
        "### Learned skips against the best fixed subset\n",
        "UDTransNet replaces the fixed skips with learned ones (attention across every encoder level). Per seed, its "
        "in-domain Dice minus that of the best fixed subset of the same data set and alpha; mean and 95% t interval "
        "over seeds, Holm over the rows of a variant. The best subset is chosen on these same scores, which favours "
        f"it. Of {len(table)} cases: {summary}.\n",
        "\n".join(lines) + f"\n\n([CSV]({link}))\n",
    ]


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


def _level_name(alpha: float) -> str:
    """A column of the subset tables: ``alpha 0.3`` for a synthetic training level, ``in-domain`` for a medical set."""
    return "in-domain" if pd.isna(alpha) else f"alpha {alpha:g}"


def _markdown(table: pd.DataFrame) -> str:
    alphas = sorted(table["train_alpha"].unique())
    lines = ["| skips kept | " + " | ".join(map(_level_name, alphas)) + " |", "|---" * (len(alphas) + 1) + "|"]
    for variant, rows in table.groupby("variant", sort=True):
        cells = []
        for alpha in alphas:
            row = rows[rows["train_alpha"].isna() if pd.isna(alpha) else rows["train_alpha"] == alpha].iloc[0]
            text = f"{row['mean']:.3f} [{format_number(row['ci_low'], 3)}, {format_number(row['ci_high'], 3)}]"
            cells.append(f"**{text}**" if row["best"] else (f"= {text}" if row["tied"] else text))
        lines.append(f"| {variant.removeprefix('unet_skips_')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
