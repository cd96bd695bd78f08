"""The report's skip-subset section: a subset x alpha table of in-domain Dice with seed-level intervals, the best
subset per alpha, and whether the best subset changes with difficulty (three-way, on seed-level tests).

Built on hand-made exports (tests/analysis_fixtures.py: every value computable by hand).
"""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from analysis_fixtures import ClaimScenario, scenario_frames, write_export

from analysis.claims import CLAIMS, CONTRADICTS, INCONCLUSIVE, SUPPORTS, evaluate_claims
from analysis.claims.evidence import Evidence
from analysis.claims.model import UDTRANSNET
from analysis.claims.subsets import (
    best_between_datasets,
    best_changes,
    contributions_differ,
    subset_drops,
    subset_scores,
)
from analysis.frames import image_scores
from analysis.report import build_report
from analysis.report.subsets import drop_table, learned_table, subset_table

SUBSETS = ("noskip_unet", "unet_skips_01", "unet_skips_10", "unet_skips_11")
NOISE = {"unet_skips_01": 0.004, "unet_skips_10": -0.003, "unet_skips_11": 0.002}  # seeds differ, pairs stay clear


def _report(tmp_path, gains: dict, ood_loss: dict | None = None) -> str:
    scenario = ClaimScenario(variants=SUBSETS, gains=gains, seed_noise=NOISE, jagged={}, ood_loss=ood_loss or {})
    runs, images = scenario_frames(scenario)
    folder = write_export(tmp_path / "export", runs, images, study="subsets")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_report(folder, n_resamples=100).report.read_text()


def test_two_alphas_whose_best_subsets_cross_support_that_the_best_changes(tmp_path) -> None:
    alphas = ClaimScenario().alphas
    low, high = alphas[0], alphas[-1]
    gains = {
        "unet_skips_01": {a: 0.08 for a in alphas if a <= 0.3},
        "unet_skips_10": {a: 0.08 for a in alphas if a > 0.3},
    }
    report = _report(tmp_path, gains)
    section = report[report.index("## Skip subsets") :]
    assert "**The best subset changes with difficulty: SUPPORTS.**" in section
    assert f"best at alpha {low:g}: unet_skips_01" in section
    table = pd.read_csv(tmp_path / "export" / "tables" / "skip_subsets_synthetic.csv")
    best = table[table["best"]].set_index("train_alpha")["variant"]
    assert best[low] == "unet_skips_01" and best[high] == "unet_skips_10"
    assert "noskip_unet" not in set(table["variant"])  # only the subset family is ranked
    assert (tmp_path / "export" / "figures" / "skip_subsets_synthetic.png").is_file()


def _images(variants: tuple, gains: dict, ood_loss: dict | None = None) -> pd.DataFrame:
    """Per-image scores of a hand-made scenario (the verdicts below are tested on them directly; the whole report's
    wiring is the test above and the committed report's rebuild)."""
    scenario = ClaimScenario(variants=variants, gains=gains, seed_noise=NOISE, jagged={}, ood_loss=ood_loss or {})
    return image_scores(*scenario_frames(scenario))


def test_one_subset_best_everywhere_by_a_clear_margin_contradicts_it() -> None:
    alphas = ClaimScenario().alphas
    verdict, measured = best_changes(subset_scores(_images(SUBSETS, {"unet_skips_11": {a: 0.08 for a in alphas}})))
    assert verdict == CONTRADICTS and measured.startswith("unet_skips_11 is best at every alpha")


def test_subsets_that_cannot_be_told_apart_leave_it_inconclusive_and_tied() -> None:
    scores = subset_scores(_images(SUBSETS, {}))
    assert best_changes(scores)[0] == INCONCLUSIVE
    table = subset_table(scores)
    assert table.groupby("train_alpha")["tied"].sum().min() >= 2  # the best and at least one it cannot beat


def test_the_subset_that_loses_least_out_of_domain_is_marked_and_ranked_per_alpha() -> None:
    losses = {"noskip_unet": 0.5, "unet_skips_01": 0.05, "unet_skips_10": 0.5, "unet_skips_11": 0.3}
    drops = subset_drops(_images(SUBSETS, {}, losses))
    verdict, measured = best_changes(drops.assign(dice=-drops["drop"]))
    assert verdict == CONTRADICTS and measured.startswith("unet_skips_01 is best at every alpha")
    table = drop_table(drops)
    assert set(table.loc[table["best"], "variant"]) == {"unet_skips_01"}
    means = table.groupby("variant")["mean"].mean()
    assert means["unet_skips_01"] < means["unet_skips_11"] < means["unet_skips_10"]  # drops follow the losses
    assert (table["ci_low"] <= table["mean"]).all() and (table["mean"] <= table["ci_high"]).all()
    flat = subset_drops(_images(SUBSETS, {}))  # no test-level losses: no subset is more robust
    assert best_changes(flat.assign(dice=-flat["drop"]))[0] == INCONCLUSIVE


FULL = ("unet_skips_00", "unet_skips_01", "unet_skips_10", "unet_skips_11")  # every subset of 2 skips


def test_a_skip_that_adds_dice_where_the_other_does_not_supports_that_skips_contribute_differently() -> None:
    alphas = ClaimScenario().alphas
    gains = {variant: {a: 0.08 for a in alphas} for variant in ("unet_skips_01", "unet_skips_11")}  # the 2nd skip
    verdict, measured, table = contributions_differ(subset_scores(_images(FULL, gains)))
    assert verdict == SUPPORTS and measured.startswith("skip 1 and skip 2 contribute differently")
    table = table.set_index("skip")
    assert table.loc["skip 2", "contribution"] > 0.05 > abs(table.loc["skip 1", "contribution"])
    verdict, measured, _ = contributions_differ(subset_scores(_images(FULL, {})))
    assert verdict == CONTRADICTS and measured.startswith("every pair of skips contributes alike")


def test_contributions_need_every_subset() -> None:
    verdict, measured, table = contributions_differ(subset_scores(_images(SUBSETS, {})))  # 3 of the 4 subsets
    assert verdict == INCONCLUSIVE and measured.startswith("needs every subset") and table is None


def _rebuilt_committed(name: str, tmp_path) -> tuple:
    """The committed docs/<name> folder and the report rebuilt from its Parquet files alone (baseline 0000)."""
    import shutil
    from pathlib import Path

    committed = Path(__file__).parents[1] / "docs" / name
    shutil.copytree(committed, tmp_path / "s", ignore=shutil.ignore_patterns("figures", "tables", "report.md"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = build_report(tmp_path / "s", baseline="unet_skips_0000").report.read_text()
    return committed, text


@pytest.mark.slow
def test_the_committed_skip_subset_report_rebuilds_from_its_parquet(tmp_path) -> None:
    committed, text = _rebuilt_committed("skip_subsets_cpu", tmp_path)
    assert text == (committed / "report.md").read_text()
    assert "**The best subset changes with difficulty: INCONCLUSIVE.**" in text
    table = pd.read_csv(committed / "tables" / "skip_subsets_synthetic.csv")
    assert len(table) == 16 * 5 and (~table["tied"]).sum() == 1  # the README's one distinguishable cell
    assert table.loc[~table["tied"], ["variant", "train_alpha"]].values.tolist() == [["unet_skips_0100", 0.7]]
    learned = pd.read_csv(committed / "tables" / "learned_skips_vs_best_subset.csv")  # the README's UDTransNet lines
    assert learned["verdict"].eq("not distinguishable").all() and len(learned) == 5
    assert learned["p_holm"].min() == pytest.approx(0.82, abs=0.005)
    groups = pd.read_csv(committed / "tables" / "robustness_ranking_groups.csv", index_col="group")
    assert groups["rank"].sort_values().index.tolist() == ["No-Skip", "Enhanced", "Standard"]


@pytest.mark.slow
def test_the_committed_glas_subsets_report_rebuilds_with_the_verdicts_its_readme_quotes(tmp_path) -> None:
    committed, text = _rebuilt_committed("skip_subsets_glas_cpu", tmp_path)
    assert text == (committed / "report.md").read_text()
    claims = pd.read_csv(committed / "tables" / "claims.csv")
    verdicts = {(row.claim, row.dataset): row.verdict for row in claims.itertuples()}
    assert verdicts[("best_subset_differs_by_dataset", "all")] == "INCONCLUSIVE"
    assert verdicts[("skips_contribute_differently", "glas")] == "CONTRADICTS"
    assert verdicts[("skips_contribute_differently", "synthetic")] == "CONTRADICTS"
    assert verdicts[("journal_noskip_best_harder_dsc", "all")] == "SUPPORTS"
    for dataset in ("glas", "synthetic"):  # the best subset is every skip, on both
        table = pd.read_csv(committed / "tables" / f"skip_subsets_{dataset}.csv")
        assert table.loc[table["best"], "variant"].tolist() == ["unet_skips_1111"] and table["tied"].all()


UDTRANSNET_CLAIMS = tuple(claim for claim in CLAIMS if claim.paper == UDTRANSNET)


def _claims(variants: tuple, gains: dict) -> dict[str, tuple[str, str]]:
    verdicts = evaluate_claims(Evidence(_images(variants, gains), n_resamples=20), UDTRANSNET_CLAIMS)
    return {row.claim: (row.verdict, row.measured) for row in verdicts.itertuples()}


def test_udtransnets_sentences_are_rows_of_the_claims_table_decided_three_ways() -> None:
    alphas = ClaimScenario().alphas
    assert {claim.name for claim in UDTRANSNET_CLAIMS} == {
        "skips_contribute_differently",
        "best_subset_differs_by_difficulty",
        "best_subset_differs_by_dataset",
    }
    # the 2nd skip adds 0.08, both add 0.12: skip 2 contributes 0.10, skip 1 0.02; 11 is best at every alpha
    second_skip = {"unet_skips_01": dict.fromkeys(alphas, 0.08), "unet_skips_11": dict.fromkeys(alphas, 0.12)}
    crossing = {
        "unet_skips_01": {a: 0.08 for a in alphas if a <= 0.3},
        "unet_skips_10": {a: 0.08 for a in alphas if a > 0.3},
    }
    found = _claims(FULL, second_skip)
    assert found["skips_contribute_differently"][0] == SUPPORTS
    assert found["best_subset_differs_by_difficulty"][0] == CONTRADICTS
    found = _claims(FULL, crossing)
    assert found["best_subset_differs_by_difficulty"][0] == SUPPORTS
    found = _claims(FULL, {})
    assert found["skips_contribute_differently"] == (
        CONTRADICTS,
        "every pair of skips contributes alike within +-0.02 Dice (TOST)",
    )
    assert found["best_subset_differs_by_difficulty"][0] == INCONCLUSIVE
    without = _claims(("noskip_unet", "unet", "attention_unet"), {})  # a study of no subsets: the reason, no crash
    assert set(without.values()) == {(INCONCLUSIVE, "the study has fewer than two skip-subset variants (unet_skips_*)")}


def _with_glas(glas_gains: dict, synthetic_gains: dict | None = None, alphas: tuple = (), ood_loss=None):
    """Per-run and per-image frames of every subset of 2 skips on a medical data set ``glas`` (no training alpha),
    with a synthetic one at ``alphas`` beside it when given."""
    scenario = ClaimScenario(
        variants=FULL,
        gains=synthetic_gains or {},
        medical_gains=glas_gains,
        seed_noise=NOISE,
        jagged={},
        ood_loss=ood_loss or {},
        medical=("glas",),
        alphas=alphas,
    )
    return scenario_frames(scenario)


def test_a_medical_data_set_gets_its_subset_table_contributions_and_drops_without_an_alpha(tmp_path) -> None:
    # the 2nd skip adds 0.08, the 1st 0.02 more on top: 11 is best, skip 2 contributes 0.09 and skip 1 0.01
    losses = {"unet_skips_00": 0.5, "unet_skips_01": 0.05, "unet_skips_10": 0.5, "unet_skips_11": 0.3}
    runs, images = _with_glas({"unet_skips_01": 0.08, "unet_skips_11": 0.10}, ood_loss=losses)
    scores = subset_scores(image_scores(runs, images))
    assert set(scores["dataset"]) == {"glas"} and scores["train_alpha"].isna().all() and len(scores) == 4 * 5
    folder = write_export(tmp_path / "export", runs, images, study="glas_subsets")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = build_report(folder, baseline="unet_skips_00", n_resamples=100).report.read_text()
    section = report[report.index("## Skip subsets") :]
    assert "### glas" in section and "| skips kept | in-domain |" in section
    assert "**The best subset changes with difficulty: INCONCLUSIVE.** a medical data set has one difficulty" in section
    assert "**Each skip contributes differently (UDTransNet): SUPPORTS.** skip 1 and skip 2 contribute" in section
    assert "#### glas: out-of-domain drop" in section and "### Between data sets" not in section
    table = pd.read_csv(folder / "tables" / "skip_subsets_glas.csv")
    assert table.loc[table["best"], "variant"].tolist() == ["unet_skips_11"] and table["train_alpha"].isna().all()
    drops = pd.read_csv(folder / "tables" / "skip_subsets_ood_drop_glas.csv")
    assert drops.loc[drops["best"], "variant"].tolist() == ["unet_skips_01"]  # the one that loses least
    contributions = pd.read_csv(folder / "tables" / "skip_contributions_glas.csv").set_index("skip")["contribution"]
    assert contributions["skip 2"] == pytest.approx(0.09, abs=1e-3) and contributions["skip 1"] == pytest.approx(
        0.01, abs=1e-3
    )
    for name in ("skip_subsets_glas", "skip_subsets_ood_drop_glas"):
        assert (folder / "figures" / f"{name}.png").is_file()
    verdicts = evaluate_claims(Evidence(image_scores(runs, images), n_resamples=20), UDTRANSNET_CLAIMS)
    found = {(row.claim, row.dataset): (row.verdict, row.measured) for row in verdicts.itertuples()}
    assert found[("skips_contribute_differently", "glas")][0] == SUPPORTS
    assert found[("best_subset_differs_by_dataset", "all")] == (
        INCONCLUSIVE,
        "needs skip subsets trained on 2+ data sets",
    )


def test_the_best_subset_between_data_sets_is_decided_three_ways() -> None:
    alphas = ClaimScenario().alphas
    crossing = best_between_datasets(
        subset_scores(
            image_scores(*_with_glas({"unet_skips_01": 0.08}, {"unet_skips_10": dict.fromkeys(alphas, 0.08)}, alphas))
        )
    )
    assert crossing[0] == SUPPORTS and "at glas: unet_skips_01" in crossing[1] and "of data sets whose" in crossing[1]
    same = best_between_datasets(
        subset_scores(
            image_scores(*_with_glas({"unet_skips_11": 0.08}, {"unet_skips_11": dict.fromkeys(alphas, 0.08)}, alphas))
        )
    )
    assert same[0] == CONTRADICTS and same[1].startswith("unet_skips_11 is best at every data set")
    assert best_between_datasets(subset_scores(image_scores(*_with_glas({}, {}, alphas))))[0] == INCONCLUSIVE


def test_learned_skips_are_set_against_the_best_fixed_subset_of_each_alpha(tmp_path) -> None:
    alphas = ClaimScenario().alphas
    gains = {
        "unet_skips_11": dict.fromkeys(alphas, 0.08),
        "udtransnet": {a: (0.15 if a <= 0.3 else 0.0) for a in alphas},  # ahead of 11 where hard, behind it where easy
    }
    variants = (*FULL, "udtransnet")
    scores = subset_scores(_images(variants, gains), also=("udtransnet",))
    table = learned_table(scores).set_index("train_alpha")
    assert set(table["best_subset"]) == {"unet_skips_11"} and len(table) == len(alphas)
    assert table.loc[alphas[0], "difference"] == pytest.approx(0.07, abs=0.005)
    assert table.loc[alphas[0], "verdict"] == "better" and table.loc[alphas[-1], "verdict"] == "worse"
    assert table.loc[alphas[-1], "difference"] == pytest.approx(-0.08, abs=0.005)
    assert (table["ci_low"] <= table["difference"]).all() and (table["difference"] <= table["ci_high"]).all()
    scenario = ClaimScenario(variants=variants, gains=gains, seed_noise=NOISE, jagged={}, ood_loss={})
    folder = write_export(tmp_path / "export", *scenario_frames(scenario), study="learned")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = build_report(folder, baseline="unet_skips_00", n_resamples=100).report.read_text()
    assert "### Learned skips against the best fixed subset" in report
    hard = sum(a <= 0.3 for a in alphas)
    assert f"Of {len(alphas)} cases: {hard} better, {len(alphas) - hard} worse, 0 not distinguishable." in report
    assert (folder / "tables" / "learned_skips_vs_best_subset.csv").is_file()
    assert learned_table(subset_scores(_images(FULL, {}))).empty  # no learned skips: no part
