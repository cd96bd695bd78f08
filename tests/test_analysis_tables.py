"""Tables from hand-made per-image frames: relative improvement, matrices, OOD tables, CoV ranking."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import busi_images
from numpy.testing import assert_allclose
from scipy import stats as scipy_stats

from analysis.frames import TESTED_ON, TRAINED_ON, MissingDataWarning, image_scores, variant_group
from analysis.report.formatting import ood_latex, ood_markdown
from analysis.tables.ood import ood_table, rank_groups, rank_variants, robustness_cov
from analysis.tables.relative import dice_matrix, relative_improvement, relative_matrix, seed_level_scores


def synthetic_frame(dice: dict[tuple[str, float, int, float], tuple[float, float]]) -> pd.DataFrame:
    """Per-image rows from {(variant, trained alpha, seed, tested alpha): (dice of image 0, dice of image 1)}."""
    rows = []
    for (variant, alpha, seed, tested), values in dice.items():
        for image, value in enumerate(values):
            rows.append(
                {
                    "run_id": f"{variant}-{alpha}-{seed}",
                    "dataset": "synthetic",
                    "variant": variant,
                    "train_alpha": alpha,
                    "seed": seed,
                    "condition": f"alpha_{tested:.2f}",
                    "test_alpha": tested,
                    "image_id": f"i{image}",
                    "dice": value,
                    "ts": tested,
                }
            )
    return pd.DataFrame(rows)


# noskip_unet mean per (alpha, seed, tested) is 0.5 (seed 0) and 0.4 (seed 1); unet is chosen per cell.
HAND = {
    ("noskip_unet", 0.3, 0, 0.3): (0.4, 0.6),
    ("noskip_unet", 0.3, 0, 0.7): (0.4, 0.6),
    ("noskip_unet", 0.3, 1, 0.3): (0.3, 0.5),
    ("noskip_unet", 0.3, 1, 0.7): (0.3, 0.5),
    ("noskip_unet", 0.7, 0, 0.3): (0.4, 0.6),
    ("noskip_unet", 0.7, 0, 0.7): (0.4, 0.6),
    ("noskip_unet", 0.7, 1, 0.3): (0.3, 0.5),
    ("noskip_unet", 0.7, 1, 0.7): (0.3, 0.5),
    ("unet", 0.3, 0, 0.3): (0.5, 0.7),
    ("unet", 0.3, 0, 0.7): (0.2, 0.4),  # means 0.6 and 0.3
    ("unet", 0.3, 1, 0.3): (0.5, 0.7),
    ("unet", 0.3, 1, 0.7): (0.1, 0.3),  # means 0.6 and 0.2
    ("unet", 0.7, 0, 0.3): (0.5, 0.5),
    ("unet", 0.7, 0, 0.7): (0.7, 0.9),  # means 0.5 and 0.8
    ("unet", 0.7, 1, 0.3): (0.4, 0.4),
    ("unet", 0.7, 1, 0.7): (0.5, 0.7),  # means 0.4 and 0.6
}


def test_cross_alpha_matrix_by_hand():
    scores = seed_level_scores(synthetic_frame(HAND))
    matrix = relative_matrix(scores, "synthetic", "unet", baseline="noskip_unet")
    assert matrix.index.name == TRAINED_ON and matrix.columns.name == TESTED_ON
    # trained 0.3, tested 0.7: seed 0 (0.3 - 0.5) / 0.5 = -0.4; seed 1 (0.2 - 0.4) / 0.4 = -0.5; mean -0.45.
    assert_allclose(matrix.loc[0.3, 0.7], -0.45)
    # trained 0.7, tested 0.3: seed 0 (0.5 - 0.5) / 0.5 = 0; seed 1 (0.4 - 0.4) / 0.4 = 0.
    assert_allclose(matrix.loc[0.7, 0.3], 0.0, atol=1e-12)
    raw = dice_matrix(scores, "synthetic", "unet")
    assert_allclose(raw.to_numpy(), [[0.6, 0.25], [0.45, 0.7]])


def test_relative_improvement_by_hand():
    scores = seed_level_scores(synthetic_frame(HAND))
    table = relative_improvement(scores, baseline="noskip_unet").set_index("train_alpha")
    # alpha 0.3: seed 0 (0.6 - 0.5) / 0.5 = 0.2, seed 1 (0.6 - 0.4) / 0.4 = 0.5 -> mean 0.35, std 0.3 / sqrt(2).
    assert_allclose(table.loc[0.3, "mean"], 0.35)
    assert_allclose(table.loc[0.3, "std"], 0.3 / math.sqrt(2))
    # alpha 0.7: seed 0 (0.8 - 0.5) / 0.5 = 0.6, seed 1 (0.6 - 0.4) / 0.4 = 0.5 -> mean 0.55.
    assert_allclose(table.loc[0.7, "mean"], 0.55)
    assert list(table["n_seeds"]) == [2, 2]
    assert list(table["variant"]) == ["unet", "unet"]


def test_any_variant_can_be_the_baseline():
    scores = seed_level_scores(synthetic_frame(HAND))
    table = relative_improvement(scores, baseline="unet").set_index("train_alpha")
    # alpha 0.3: seed 0 (0.5 - 0.6) / 0.6, seed 1 (0.4 - 0.6) / 0.6.
    assert_allclose(table.loc[0.3, "mean"], ((0.5 - 0.6) / 0.6 + (0.4 - 0.6) / 0.6) / 2)
    with pytest.raises(ValueError, match="'vnet' is not among the variants"):
        relative_improvement(scores, baseline="vnet")


def test_missing_seed_leaves_explicit_nan_and_names_it():
    incomplete = {key: value for key, value in HAND.items() if key[:3] != ("unet", 0.7, 1)}
    with pytest.warns(MissingDataWarning, match=r"synthetic: .*\(unet, alpha 0\.70, seed 1\)"):
        scores = seed_level_scores(synthetic_frame(incomplete))
    table = relative_improvement(scores).set_index("train_alpha")
    assert math.isnan(table.loc[0.7, "mean"]) and math.isnan(table.loc[0.7, "std"])
    assert table.loc[0.7, "n_seeds"] == 1
    assert_allclose(table.loc[0.3, "mean"], 0.35)  # other cells untouched
    matrix = relative_matrix(scores, "synthetic", "unet")
    assert matrix.loc[[0.7]].isna().all(axis=None) and matrix.loc[[0.3]].notna().all(axis=None)


def test_missing_tested_alpha_is_named_with_it():
    incomplete = {key: value for key, value in HAND.items() if key != ("unet", 0.3, 1, 0.7)}
    with pytest.warns(MissingDataWarning, match=r"\(unet, alpha 0\.30, seed 1\) tested on alpha 0\.70"):
        scores = seed_level_scores(synthetic_frame(incomplete))
    matrix = relative_matrix(scores, "synthetic", "unet")
    assert math.isnan(matrix.loc[0.3, 0.7]) and not math.isnan(matrix.loc[0.3, 0.3])


def busi_table(metric: str = "dice", baseline: str | None = None) -> pd.DataFrame:
    images = pd.concat(
        [
            busi_images(v, s).assign(run_id=f"{v}{s}", dataset="busi", variant=v, train_alpha=np.nan, seed=s)
            for v in ("noskip_unet", "unet")
            for s in (0, 1)
        ]
    )
    return ood_table(images, metric, baseline=baseline, n_resamples=200)


def test_ood_row_mean_std_and_best():
    table = busi_table().set_index(["level", "variant"])
    assert list(dict.fromkeys(table.index.get_level_values("level"))) == ["harder", "in_domain", "easier"]
    # noskip_unet in-domain: 0.6, 0.8 (seed 0), 0.7, 0.9 (seed 1): mean 0.75, std sqrt(0.05 / 3).
    assert_allclose(table.loc[("in_domain", "noskip_unet"), "mean"], 0.75)
    assert_allclose(table.loc[("in_domain", "noskip_unet"), "std"], math.sqrt(0.05 / 3))
    assert table.loc[("in_domain", "noskip_unet"), "n"] == 4
    assert table.loc[("in_domain", "unet"), "best"] and not table.loc[("in_domain", "noskip_unet"), "best"]
    assert table.loc[("harder", "noskip_unet"), "best"]


def test_ood_markdown_and_latex_rows():
    markdown, latex = ood_markdown(busi_table()), ood_latex(busi_table())
    assert "| data set | test level | noskip_unet | unet |" in markdown
    assert "| busi | harder | **0.575 (0.065)** | 0.475 (0.065) |" in markdown
    assert "|  | in_domain | 0.750 (0.129) | **0.875 (0.065)** |" in markdown
    assert r"\toprule" in latex and r"\bottomrule" in latex
    assert r"busi & harder & \textbf{0.575 (0.065)} & 0.475 (0.065) \\" in latex
    assert r" & in\_domain & 0.750 (0.129) & \textbf{0.875 (0.065)} \\" in latex


def test_hd95_best_is_the_lowest():
    table = busi_table("hd95").set_index(["level", "variant"])
    assert table.loc[("in_domain", "unet"), "best"] and not table.loc[("in_domain", "noskip_unet"), "best"]
    assert "**8.50 (0.58)**" in ood_markdown(busi_table("hd95"), "hd95")


def test_significance_marks_survive_holm_only():
    table = busi_table(baseline="noskip_unet")
    unet = table[table["variant"] == "unet"].set_index("level")
    # The seed is the replicate: per-seed gains 0.85 - 0.70 = 0.15 and 0.90 - 0.80 = 0.10, so t = 0.125 /
    # (0.0354 / sqrt 2) = 5.0 with 1 degree of freedom, p = 0.1257; Holm over 3 cells cannot go below it.
    assert_allclose(unet.loc["in_domain", "mean_diff"], 0.125)
    assert_allclose(unet.loc["in_domain", "p_value"], 2 * scipy_stats.t(1).sf(5.0))
    # the 4 image pairs, all of one sign, give the per-image view its exact Wilcoxon p = 2 / 16
    assert_allclose(unet.loc["in_domain", "p_images"], 2 / 16)
    # harder and easier: both seeds move by exactly -0.10 / +0.125, a zero spread, so the t-test's limit p = 0
    assert unet["significant"].to_dict() == {"harder": True, "in_domain": False, "easier": True}
    assert "|  | in_domain | 0.750 (0.129) | **0.875 (0.065)** |" in ood_markdown(table)
    assert "| busi | harder | **0.575 (0.065)** | 0.475 (0.065) †" in ood_markdown(table)
    assert r"0.475 (0.065)$^\dagger$" in ood_latex(table)


def hand_dice_table() -> pd.DataFrame:
    level_means = {
        ("busi", "noskip_unet"): [0.6, 0.8, 1.0],
        ("busi", "unet"): [0.7, 0.8, 0.9],
        ("busi", "attention_unet"): [0.8, 0.8, 0.8],
        ("busi", "vnet"): [0.5, 0.8, 0.8],
        ("spleen", "noskip_unet"): [0.5, 0.5],
        ("spleen", "unet"): [0.4, 0.6],
        ("spleen", "attention_unet"): [0.3, 0.5],
        ("spleen", "vnet"): [0.6, 0.6],
    }
    rows = [
        {
            "label": dataset,
            "dataset": dataset,
            "train_alpha": np.nan,
            "level": f"l{i}",
            "variant": variant,
            "mean": mean,
        }
        for (dataset, variant), means in level_means.items()
        for i, mean in enumerate(means)
    ]
    return pd.DataFrame(rows)


def test_cov_ranking_by_hand():
    cov = robustness_cov(hand_dice_table()).set_index(["dataset", "variant"])
    # busi noskip: mean 0.8, population std sqrt(0.08 / 3) = 0.163299 -> 0.204124.
    assert_allclose(cov.loc[("busi", "noskip_unet"), "cov"], 0.2041241, rtol=1e-6)
    assert_allclose(cov.loc[("busi", "unet"), "cov"], 0.1020621, rtol=1e-6)
    assert_allclose(cov.loc[("busi", "vnet"), "cov"], 0.2020305, rtol=1e-6)
    assert_allclose(cov.loc[("spleen", "attention_unet"), "cov"], 0.25)
    assert cov.loc[("busi", "attention_unet"), "rank"] == 1 and cov.loc[("busi", "noskip_unet"), "rank"] == 4
    variants = rank_variants(robustness_cov(hand_dice_table()))
    # mean CoV: vnet 0.101015 < noskip 0.102062 < attention 0.125 < unet 0.151031.
    assert list(variants.sort_values("rank").index) == ["vnet", "noskip_unet", "attention_unet", "unet"]
    assert_allclose(variants.loc["unet", "mean CoV"], 0.1510310, rtol=1e-6)
    groups = rank_groups(robustness_cov(hand_dice_table()))
    # No-Skip 0.102062; Standard mean of unet and vnet per data set: (0.152046 + 0.1) / 2; Enhanced 0.125.
    assert_allclose(groups.loc["Standard", "busi"], (0.1020621 + 0.2020305) / 2, rtol=1e-6)
    assert_allclose(groups.loc["Standard", "mean CoV"], 0.1260232, rtol=1e-6)
    assert list(groups.sort_values("rank").index) == ["No-Skip", "Enhanced", "Standard"]


def test_the_ends_of_the_skip_subsets_rank_in_the_groups_of_the_networks_they_equal():
    names = {"noskip_unet": "unet_skips_0000", "unet": "unet_skips_1111", "vnet": "unet_skips_0110"}
    renamed = hand_dice_table().replace({"variant": names})
    groups = rank_groups(robustness_cov(renamed))
    # No-Skip = unet_skips_0000 (0.102062), Standard = unet_skips_1111 alone (0.151031: the partial subset in place
    # of vnet belongs to no group), Enhanced 0.125.
    assert list(groups.sort_values("rank").index) == ["No-Skip", "Enhanced", "Standard"]
    assert_allclose(groups.loc["No-Skip", "mean CoV"], 0.1020621, rtol=1e-5)
    assert_allclose(groups.loc["Standard", "mean CoV"], 0.1510310, rtol=1e-6)
    assert [variant_group(v) for v in ("unet_skips_000", "unet_skips_111", "unet_skips_0110", "udtransnet")] == [
        "No-Skip",
        "Standard",
        None,
        "Enhanced",
    ]


def test_image_scores_matches_alphas_up_to_float_noise():
    runs = pd.DataFrame(
        {
            "run_id": ["r1", "r2"],
            "dataset": "synthetic",
            "variant": ["noskip_unet", "unet"],
            "train_alpha": [0.3, 0.3],
            "seed": [0, 0],
        }
    )
    per_image = pd.DataFrame(
        {
            "run_id": ["r1", "r2"],
            "condition": "alpha_0.30",
            "test_alpha": [0.3, 0.1 * 3],
            "image_id": "i0",
            "dice": [0.5, 0.6],
            "ts": 1.0,
            "hd95": [3.0, np.inf],
        }
    )
    with pytest.warns(MissingDataWarning, match="1 per-image hd95 value"):
        images = image_scores(runs, per_image)
    assert list(images.columns) == [
        "run_id",
        "dataset",
        "variant",
        "train_alpha",
        "seed",
        "condition",
        "test_alpha",
        "image_id",
        "dice",
        "hd95",
        "ts",
    ]
    assert math.isnan(images.loc[1, "hd95"])  # an infinite distance is missing, not averaged in
    improvement = relative_improvement(seed_level_scores(images))  # 0.30000000000000004 counts as in-domain
    assert_allclose(improvement["mean"], [0.2])
