"""The journal's texture-range finding, checked where a study sweeps ``training.train_range``.

The journal extension of Kamath et al. reports that "training data sets with a narrow texture range negatively
impact the robustness of architectures that include more skip connections. The robustness gap between
architectures reduces when trained on a larger TD range". A study that trains the same grid on one alpha level
(the narrowest range) and on a wider range of levels (``sweep: {training.train_range: [0.0, 0.4]}``) can test it.

With the trained model as the unit: a model's out-of-domain *drop* is its in-domain Dice minus its mean Dice at
the study's other test levels (its own alpha's test images perturbed); a variant's *robustness gap* is its drop
minus the baseline's (the no-skip U-Net) at the same range, alpha and seed: positive when the variant with skips
loses more out of domain. Per seed (the mean over the alphas), the *reduction* is the gap at the narrowest range
minus the gap at the widest.

Verdict, over the baseline's comparators (Holm over them): SUPPORTS when some variant's gap at the narrowest range
is positive and its reduction is positive (both one-sided seed-level t-tests); CONTRADICTS when every variant's
reduction is equivalent to 0 within +-MARGIN Dice (TOST) or significantly negative; INCONCLUSIVE otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.claims import CONTRADICTS, INCONCLUSIVE, SUPPORTS
from analysis.frames import SWEEP_PREFIX, ExportedStudy, image_scores, ordered_variants
from analysis.report.formatting import format_number, markdown_table
from analysis.statistics.paired import holm
from analysis.statistics.seeds import EQUIVALENT, MIN_SEEDS, equivalence, seed_effect, seed_p

RANGE_AXIS = f"{SWEEP_PREFIX}training.train_range"
MARGIN = 0.02  # absolute Dice: a change of the robustness gap smaller than this is negligible
QUOTE = (
    "training data sets with a narrow texture range negatively impact the robustness of architectures that include "
    "more skip connections. The robustness gap between architectures reduces when trained on a larger TD range"
)


def model_drops(study: ExportedStudy) -> pd.DataFrame:
    """One row per synthetic trained model: dataset, variant, train_alpha, seed, range, drop."""
    images = image_scores(study.runs, study.per_image)
    ranges = study.runs.set_index("run_id")[RANGE_AXIS]
    perturbed = images[images["test_alpha"].isna() & images["train_alpha"].notna()]
    means = perturbed.groupby(["run_id", "condition"])["dice"].mean().unstack("condition")
    if "in_domain" not in means or means.shape[1] < 2:
        return pd.DataFrame(columns=["dataset", "variant", "train_alpha", "seed", "range", "drop"])
    others = [condition for condition in means.columns if condition != "in_domain"]
    drop = (means["in_domain"] - means[others].mean(axis=1)).rename("drop")
    keys = study.runs.set_index("run_id")[["dataset", "variant", "train_alpha", "seed"]]
    frame = keys.join(drop, how="inner").join(ranges.rename("range"))
    return frame.reset_index(drop=True)


def range_gaps(drops: pd.DataFrame, baseline: str) -> dict[str, dict[str, pd.Series]]:
    """Per (dataset, variant): the per-seed robustness gap at the narrowest and widest range and their difference."""
    narrow, wide = drops["range"].min(), drops["range"].max()
    keyed = drops.set_index(["dataset", "range", "train_alpha", "seed", "variant"])["drop"].unstack("variant")
    if baseline not in keyed:
        return {}
    gaps = keyed.drop(columns=baseline).sub(keyed[baseline], axis=0)  # + : the variant loses more than the baseline
    result = {}
    for dataset in sorted(drops["dataset"].unique()):
        for variant in ordered_variants(gaps.columns):
            per = gaps.loc[dataset, variant].groupby(level=["range", "seed"]).mean()  # mean over the alphas
            at_narrow, at_wide = per.loc[narrow], per.loc[wide]
            result[f"{dataset}|{variant}"] = {
                "narrow": at_narrow,
                "wide": at_wide,
                "reduction": (at_narrow - at_wide).dropna(),
            }
    return result


def texture_range_verdict(drops: pd.DataFrame, baseline: str, level: float = 0.05) -> tuple[str, str, pd.DataFrame]:
    """The verdict on the journal's texture-range sentence, what decided it, and the table of gaps."""
    gaps = range_gaps(drops, baseline)
    rows = []
    for key, parts in gaps.items():
        dataset, variant = key.split("|")
        row = {"dataset": dataset, "variant": variant}
        for name in ("narrow", "wide", "reduction"):
            effect = seed_effect(parts[name].to_numpy())
            row |= {f"{name}_mean": effect.mean, f"{name}_ci_low": effect.ci_low, f"{name}_ci_high": effect.ci_high}
        row["n_seeds"] = len(parts["reduction"])
        row["p_narrow_gap"] = seed_p(parts["narrow"].to_numpy(), "greater")
        row["p_reduction"] = seed_p(parts["reduction"].to_numpy(), "greater")
        row["reduction_equivalent"] = equivalence(parts["reduction"].to_numpy(), MARGIN, level).outcome == EQUIVALENT
        row["p_increase"] = seed_p(-parts["reduction"].to_numpy(), "greater")
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return INCONCLUSIVE, f"needs {baseline} and another variant at two ranges", table
    if table["n_seeds"].min() < MIN_SEEDS:
        return INCONCLUSIVE, f"needs {MIN_SEEDS}+ seeds per variant and range", table
    both = np.fmax(table["p_narrow_gap"].to_numpy(), table["p_reduction"].to_numpy())
    table["p_holm"] = holm(list(both))
    best = int(np.nanargmin(table["p_holm"]))
    chosen = table.iloc[best]
    said = (
        f"{chosen['variant']} on {chosen['dataset']}: gap {chosen['narrow_mean']:+.3f} narrow, "
        f"{chosen['wide_mean']:+.3f} wide, reduction {chosen['reduction_mean']:+.3f} "
        f"[{format_number(chosen['reduction_ci_low'], 3)}, {format_number(chosen['reduction_ci_high'], 3)}], "
        f"Holm p = {format_number(chosen['p_holm'], 3)}"
    )
    if chosen["p_holm"] <= level:
        return SUPPORTS, said, table
    against = table["reduction_equivalent"] | (np.asarray(holm(list(table["p_increase"]))) <= level)
    if against.all():
        return CONTRADICTS, f"no variant's gap narrows by more than +-{MARGIN} Dice with the wider range; {said}", table
    return INCONCLUSIVE, said, table


def texture_range_section(writer, study: ExportedStudy, baseline: str, level: float = 0.05) -> str:
    """The across-sweep report's section on the texture range ("" unless ``training.train_range`` is swept)."""
    if RANGE_AXIS not in study.runs or study.runs[RANGE_AXIS].nunique() < 2:
        return ""
    drops = model_drops(study)
    if drops.empty:
        return ""
    verdict, measured, table = texture_range_verdict(drops, baseline, level)
    narrow, wide = drops["range"].min(), drops["range"].max()
    link = writer.csv("texture_range_gaps.csv", table) if not table.empty else ""
    rows = [
        [
            row["dataset"],
            row["variant"],
            *(
                f"{row[f'{name}_mean']:+.3f} [{format_number(row[f'{name}_ci_low'], 3)}, "
                f"{format_number(row[f'{name}_ci_high'], 3)}]"
                for name in ("narrow", "wide", "reduction")
            ),
        ]
        for row in table.to_dict("records")
    ]
    header = ["data set", "variant", f"gap at range {narrow:g}", f"gap at range {wide:g}", "reduction"]
    return (
        "## Does a wider texture range close the robustness gap? (Kamath et al., journal)\n\n"
        f'> "{QUOTE}"\n\n'
        f"**{verdict}.** {measured}.\n\n"
        "A model's drop: in-domain Dice minus its mean Dice at the other test levels; a variant's gap: its drop minus "
        f"{baseline}'s at the same range, alpha and seed (positive: it loses more out of domain); the reduction: the "
        f"gap at range {narrow:g} minus at {wide:g}, per seed (mean over the alphas). Mean and 95% t interval over "
        "seeds. SUPPORTS needs a positive narrow gap and a positive reduction (one-sided t-tests, Holm over the "
        f"variants); CONTRADICTS needs every reduction equal to 0 within +-{MARGIN} Dice (TOST) or negative.\n\n"
        + (markdown_table(header, rows) if rows else "")
        + (f"\n([CSV]({link}))\n" if link else "")
    )
