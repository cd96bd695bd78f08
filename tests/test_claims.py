"""The claims: each sentence SUPPORTED where a synthetic study makes it true, CONTRADICTED where it makes it false,
INCONCLUSIVE where the study cannot decide (too few seeds, an interval straddling the margin, data it lacks);
plus the report sections built on them.

The data are :class:`ClaimScenario` studies (tests/analysis_fixtures.py) written to Parquet, no training.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import pandas as pd
import pytest
from analysis_fixtures import ClaimScenario, scenario_frames, write_export
from numpy.testing import assert_allclose

from analysis.__main__ import main
from analysis.claims import CLAIMS, CONTRADICTS, INCONCLUSIVE, SUPPORTS, VERDICT_COLUMNS, Claim, evaluate_claims
from analysis.claims.evidence import Evidence
from analysis.claims.table1 import table1_comparison
from analysis.frames import image_scores, load_export
from analysis.report import build_report
from analysis.report.notes import mixed_settings
from analysis.tables.levels import level_check_line, level_summary
from trainables import files

TRUE = ClaimScenario(medical=("busi", "spleen"), hd95=True)
NEVER_DECIDED = {"journal_training_texture_range"}
SUBSET_CLAIMS = {  # about skip-subset variants, which these scenarios lack: decided three ways in test_report_subsets
    "skips_contribute_differently",
    "best_subset_differs_by_difficulty",
    "best_subset_differs_by_dataset",
}
NO_SKIP_WORST = {"noskip_unet": 0.9, "unet": 0.1, "attention_unet": 0.1}
FALSE = {  # claim -> a scenario where that sentence is false
    "parity_above_0.3": dict(gains={"attention_unet": dict.fromkeys(TRUE.alphas, 0.08)}),
    "attention_gain_below_0.3": dict(gains={}),
    "attention_gain_exceeds_unet": dict(
        gains={"attention_unet": {0.1: 0.2, 0.2: 0.15}, "unet": {0.1: 0.2, 0.2: 0.15}}, jagged={}
    ),
    "unet_noisier_seeds": dict(seed_noise={"noskip_unet": 0.012, "unet": 0.004}),
    "unet_noisier_curve": dict(jagged={"noskip_unet": 0.003}),
    "ood_named_cells": dict(ood_loss={"noskip_unet": 0.1, "unet": 0.5, "attention_unet": 0.02}),
    "ood_harm_exists": dict(ood_loss={"noskip_unet": 0.1, "unet": 0.1, "attention_unet": 0.1}),
    "ood_harm_exists_unet": dict(ood_loss={"noskip_unet": 0.1, "unet": 0.1, "attention_unet": 0.1}),
    "table1_attention_best_in_domain": dict(medical_gains={}),
    "table1_busi_unet_as_noskip": dict(medical_gains={"attention_unet": 0.1, "unet": 0.05}),
    "table1_busi_unet_drops_more": dict(ood_loss={"noskip_unet": 0.5, "unet": 0.05, "attention_unet": 0.5}),
    "table1_spleen_heart_attention_drops": dict(ood_loss={"noskip_unet": 0.5, "unet": 0.5, "attention_unet": 0.05}),
    "table1_spleen_heart_unet_drops": dict(ood_loss={"noskip_unet": 0.5, "unet": 0.05, "attention_unet": 0.5}),
    "journal_noskip_best_harder_dsc": dict(ood_loss=NO_SKIP_WORST),
    "journal_noskip_best_harder_hd": dict(ood_loss=NO_SKIP_WORST),
    "journal_cov_noskip_most_robust": dict(ood_loss=NO_SKIP_WORST),
}


def verdicts_of(scenario: ClaimScenario, tmp_path, claims=CLAIMS) -> pd.DataFrame:
    """Write the scenario as an export, read it back as the report does, and check the claims."""
    runs, per_image = scenario_frames(scenario)
    study = load_export(write_export(tmp_path / "export", runs, per_image))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate_claims(Evidence(image_scores(study.runs, study.per_image), n_resamples=20), claims)


def by_claim(verdicts: pd.DataFrame) -> dict[str, set[str]]:
    return verdicts.groupby("claim")["verdict"].agg(set).to_dict()


def test_every_claim_quotes_its_sentence_and_has_a_false_case():
    assert {claim.name for claim in CLAIMS} == set(FALSE) | NEVER_DECIDED | SUBSET_CLAIMS
    for claim in CLAIMS:
        assert claim.quote and claim.paper and claim.source, claim.name


def test_every_claim_supported_where_the_data_make_it_true(tmp_path):
    verdicts = verdicts_of(TRUE, tmp_path)
    assert list(verdicts.columns) == VERDICT_COLUMNS
    undecided = NEVER_DECIDED | SUBSET_CLAIMS
    expected = {claim.name: {INCONCLUSIVE if claim.name in undecided else SUPPORTS} for claim in CLAIMS}
    assert by_claim(verdicts) == expected
    rows = verdicts.set_index(["claim", "dataset"])
    # attention gains 0.20 over noskip's 0.54 at alpha 0.1: seeds move noskip by +-0.004 x (1, -1, .5, -.5, 0)
    assert_allclose(rows.loc[("attention_gain_below_0.3", "synthetic"), "value"], 0.20 / 0.54, rtol=1e-3)
    # the highest alpha with a significant in-domain difference is 0.2 (the attention gains), as the data say
    assert_allclose(rows.loc[("parity_above_0.3", "synthetic"), "value"], 0.2)
    assert (
        "highest alpha with a significant difference: 0.20 (paper: 0.30)"
        in rows.loc[("parity_above_0.3", "synthetic"), "measured"]
    )
    # seed noise 0.012 vs 0.004 with the same sign pattern: variance ratio 9
    assert_allclose(rows.loc[("unet_noisier_seeds", "synthetic"), "value"], 9.0, rtol=0.05)
    # drop on harder: 0.5 x 0.5 = 25% for unet vs 0.5 x 0.1 = 5% for noskip -> extra drop 0.20
    assert_allclose(rows.loc[("table1_busi_unet_drops_more", "busi"), "value"], 0.20)
    assert set(verdicts["dataset"]) == {"synthetic", "busi", "spleen", "all"}


@pytest.mark.parametrize("claim", sorted(FALSE))
def test_each_claim_contradicted_where_the_data_make_it_false(claim, tmp_path):
    verdicts = verdicts_of(dataclasses.replace(TRUE, **FALSE[claim]), tmp_path)
    assert by_claim(verdicts)[claim] == {CONTRADICTS}, verdicts.set_index("claim").loc[claim, "measured"]


def test_a_one_seed_study_decides_nothing_about_differences(tmp_path):
    """The default quick study (1 seed) must not report any claim about variant differences as decided."""
    verdicts = verdicts_of(dataclasses.replace(TRUE, seeds=(0,)), tmp_path)
    assert set(verdicts["verdict"]) == {INCONCLUSIVE}
    seeded = verdicts[~verdicts["claim"].str.startswith("journal") & ~verdicts["claim"].isin(SUBSET_CLAIMS)]
    assert seeded["measured"].str.startswith("1 seed(s): a difference between variants needs at least 3").all()
    runs, per_image = scenario_frames(dataclasses.replace(TRUE, seeds=(0,), medical=()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = build_report(write_export(tmp_path / "one_seed", runs, per_image), n_resamples=20).report
    assert "this study **cannot decide any claim about differences between variants**" in report.read_text()


def test_two_seeds_are_too_few_and_a_wide_interval_is_undecided(tmp_path):
    two = verdicts_of(dataclasses.replace(TRUE, seeds=(0, 1)), tmp_path)
    assert set(two["verdict"]) == {INCONCLUSIVE}
    # seed-to-seed spread of 5% of Dice: the parity interval straddles the +-2% margin, neither way decided
    noisy = dataclasses.replace(TRUE, seed_noise={"noskip_unet": 0.0, "unet": 0.05, "attention_unet": 0.0})
    verdict = verdicts_of(noisy, tmp_path, claims=[c for c in CLAIMS if c.name == "parity_above_0.3"]).iloc[0]
    assert verdict["verdict"] == INCONCLUSIVE
    assert verdict["measured"].startswith("the interval straddles the margin in some cell")


def test_data_the_study_lacks_make_a_claim_inconclusive_with_the_reason(tmp_path):
    synthetic_only = dataclasses.replace(TRUE, medical=(), alphas=(0.1, 0.2, 0.3, 0.5, 0.9))
    verdicts = verdicts_of(synthetic_only, tmp_path).set_index("claim")
    assert verdicts.loc["ood_named_cells", "verdict"] == INCONCLUSIVE
    assert verdicts.loc["ood_named_cells", "measured"] == "the study lacks the cell(s) trained 0.40, tested 0.90"
    for name in ("table1_attention_best_in_domain", "table1_busi_unet_as_noskip"):
        assert verdicts.loc[name, "verdict"] == INCONCLUSIVE
        assert "is about medical test sets" in verdicts.loc[name, "measured"]
    medical_only = verdicts_of(dataclasses.replace(TRUE, alphas=()), tmp_path).set_index("claim")
    assert medical_only.loc["parity_above_0.3", "measured"] == "the study has no cross-alpha (synthetic) results"
    no_attention = dataclasses.replace(TRUE, variants=("noskip_unet", "unet"))
    verdict = verdicts_of(no_attention, tmp_path).set_index("claim").loc["attention_gain_below_0.3"]
    assert (verdict["verdict"], verdict["measured"]) == (INCONCLUSIVE, "attention_unet not in the study")


def test_an_export_without_per_image_rows_says_what_it_skipped(tmp_path):
    runs, per_image = scenario_frames(TRUE)
    study = load_export(write_export(tmp_path / "export", runs, per_image.iloc[0:0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verdicts = evaluate_claims(Evidence(image_scores(study.runs, study.per_image), n_resamples=20))
    assert set(verdicts["verdict"]) == {INCONCLUSIVE}
    skipped = verdicts[~verdicts["claim"].isin(NEVER_DECIDED)]
    assert skipped["measured"].str.startswith("skipped: the export has no per-image rows").all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = build_report(tmp_path / "export", n_resamples=20).report.read_text()
    assert f"This export has **no per-image rows**, so no test result could be read: all {len(verdicts)} claims" in text


def test_a_claim_of_ones_own_reuses_a_kind(tmp_path):
    mine = Claim(
        name="unet_parity_above_0.5",
        paper="my notes",
        source="-",
        quote="unet matches noskip above 0.5",
        kind="parity_above",
        variants=("unet",),
        boundary=0.5,
    )
    assert verdicts_of(TRUE, tmp_path, claims=(mine,))["verdict"].tolist() == [SUPPORTS]
    with pytest.raises(ValueError, match="kind 'typo' is not one of"):
        verdicts_of(TRUE, tmp_path, claims=(dataclasses.replace(mine, kind="typo"),))


def test_level_summary_checks_that_harder_lowers_ts(tmp_path):
    runs, per_image = scenario_frames(ClaimScenario(alphas=(0.5,), level_ts={"harder": 1.2, "in_domain": 1.0}))
    summary = level_summary(image_scores(runs, per_image)).set_index("level")
    assert list(summary.index) == ["harder", "in_domain"]
    # in-domain TS at alpha 0.5: 0.1 + 0.25 + 0.01 * mean(0..9) = 0.395; harder x 1.2.
    assert_allclose(summary.loc["in_domain", "mean_ts"], 0.395)
    assert_allclose(summary.loc["harder", "ts_change"], 0.2 * 0.395)
    assert summary["as_expected"].tolist() == [False, None]
    line = level_check_line(summary.reset_index())
    assert "holds for 0 of 1" in line and "**does not hold** for synthetic (alpha 0.50) harder" in line


def test_mixed_precision_and_threads_are_named_and_older_runs_say_nothing():
    runs = pd.DataFrame({"param.precision": ["bf16", "fp32", "bf16"], "param.torch_threads": [2, 2, 2]})
    assert mixed_settings(runs) == [
        "runs mix precisions: bf16 (2 runs), fp32 (1 runs); epoch times are not comparable and low precision "
        "can move Dice"
    ]
    assert mixed_settings(pd.DataFrame({"run_id": ["a", "b"]})) == []
    resumed = pd.DataFrame({"run_name": ["a", "b"], "params_changed": ["", "precision=bf16"]})
    assert mixed_settings(resumed) == [
        "1 run(s) resumed with other settings than they started with (their params keep the first): b (precision=bf16)"
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_report_opens_with_the_claims_and_writes_their_csv(tmp_path):
    scenario = ClaimScenario(alphas=(0.1, 0.5, 0.9), level_ts={"harder": 1.2, "in_domain": 1.0, "easier": 1.5})
    runs, per_image = scenario_frames(dataclasses.replace(scenario, params={"precision": ["bf16", "none"]}))
    folder = write_export(tmp_path / "results", runs, per_image)
    result = build_report(folder, n_resamples=20)
    text = result.report.read_text()
    order = [text.index(title) for title in ("## What this study can conclude", "## Claims of the papers")]
    assert order == sorted(order) and order[1] < text.index("## In-domain relative improvement")
    claims = pd.read_csv(folder / "tables" / "claims.csv")
    counts = claims["verdict"].value_counts()
    tally = (
        f"({counts[SUPPORTS]} SUPPORTS, {counts.get(CONTRADICTS, 0)} CONTRADICTS, {counts[INCONCLUSIVE]} INCONCLUSIVE;"
    )
    assert tally in text
    # no medical data set, alphas 0.1/0.5/0.9 only: Table 1's sentences and the named 0.3/0.4 cells stay open
    assert claims.set_index("claim").loc["ood_named_cells", "verdict"] == INCONCLUSIVE
    assert "- no medical data set: the paper's Table 1 and the journal's medical counts cannot be checked" in text
    assert "5 seeds detect a gain of about" in text
    quoted = '- **parity_above_0.3** (Kamath et al., MICCAI 2023, Sec. 3.1, Fig. 4 left): "It is worth noting'
    assert quoted in text
    assert "- runs mix precisions: bf16 (" in text and result.warnings[0].startswith("runs mix precisions")
    assert "rows are the alpha a model was **trained** on, columns the alpha it was **tested** on" in text
    assert "reads as if its heatmap were transposed" in text
    assert "**does not hold** for synthetic (alpha 0.10) harder" in text  # harder raises TS in this scenario
    levels = pd.read_csv(folder / "tables" / "test_levels.csv")
    assert list(levels["level"][:3]) == ["harder", "in_domain", "easier"]
    before = result.report.read_bytes()
    assert main(["report", str(folder), "--resamples", "0"]) == 2  # refused or failed: the report is untouched
    assert result.report.read_bytes() == before
    assert [path.name for path in folder.glob(".report*")] == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_report_files_are_readable_by_others_and_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    runs, per_image = scenario_frames(dataclasses.replace(TRUE, alphas=(0.1, 0.9), medical=()))
    folder = write_export(tmp_path / "results", runs, per_image)
    previous = os.umask(0o022)
    try:
        result = build_report(folder, n_resamples=20)
    finally:
        os.umask(previous)
    written = [result.report, *result.figures, *result.tables]
    assert {oct(path.stat().st_mode & 0o777) for path in written} == {"0o644"}  # what a plain open() gives
    before = result.report.read_bytes()

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        build_report(folder, n_resamples=20)
    assert result.report.read_bytes() == before
    assert [path.name for path in folder.rglob(".*")] == []  # no temporary file left behind


def test_out_of_domain_cells_over_a_near_zero_baseline_are_left_out(tmp_path):
    # noskip loses 115% per unit of |trained - tested|: at |0.1 - 0.9| = 0.8 its Dice is 8% of in-domain, < 0.10
    scenario = dataclasses.replace(TRUE, ood_loss={"noskip_unet": 1.15, "unet": 0.5, "attention_unet": 0.5})
    harm = [claim for claim in CLAIMS if claim.name == "ood_harm_exists"]
    verdict = verdicts_of(scenario, tmp_path, claims=harm).iloc[0]
    assert verdict["measured"].startswith("noskip_unet significantly better in none of 40 cells")  # 42 - 2
    assert verdict["measured"].endswith("2 cells under the Dice floor left out")


def test_table1_cell_by_cell_on_a_medical_study(tmp_path):
    runs, per_image = scenario_frames(TRUE)
    study = load_export(write_export(tmp_path / "export", runs, per_image))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = table1_comparison(Evidence(image_scores(study.runs, study.per_image), n_resamples=20))
    # busi and spleen x 3 levels x 3 variants of Table 1's 27 cells (no heart in this study)
    assert len(table) == 18 and set(table["dataset"]) == {"busi", "spleen"}
    cell = table.set_index(["dataset", "level", "variant"]).loc[("busi", "in_domain", "noskip_unet")]
    # ours: 0.5 + 0.4 x 0.7 = 0.78, seed noise +-0.004 x (1, -1, .5, -.5, 0) averages out; the paper: 0.761 (0.258)
    assert_allclose([cell["paper_mean"], cell["paper_std"], cell["mean"]], [0.761, 0.258, 0.78])
    assert_allclose(cell["difference"], 0.78 - 0.761)
    assert cell["n_seeds"] == 5 and cell["ci_low"] < 0.78 < cell["ci_high"] and not cell["paper_inside_ci"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = build_report(tmp_path / "export", n_resamples=20).report.read_text()
    assert "## MICCAI 2023 Table 1, cell by cell" in text
    assert "| Breast (Ultrasound) | in_domain | noskip_unet | 0.761 (0.258) | 0.780 [" in text
