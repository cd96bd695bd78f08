"""The claims section: each claim of the MICCAI paper SUPPORTED where the synthetic data makes it true,
CONTRADICTED where it makes it false, INCONCLUSIVE where the study cannot test it; plus the report notes.

The data are :class:`ClaimScenario` studies (tests/analysis_fixtures.py) written to Parquet, no training.
"""

from __future__ import annotations

import dataclasses
import warnings

import pandas as pd
import pytest
from numpy.testing import assert_allclose

from analysis import report as report_module
from analysis.__main__ import main
from analysis.claims import CLAIMS, VERDICT_COLUMNS, Claim, evaluate_claims
from analysis.claims.checks import CONTRADICTS, INCONCLUSIVE, SUPPORTS
from analysis.claims.evidence import Evidence
from analysis.frames import image_scores, load_export
from analysis.report import build_report
from analysis.report.notes import mixed_settings
from analysis.tables.levels import level_check_line, level_summary

try:
    from analysis_fixtures import ClaimScenario, scenario_frames, write_export
except ImportError:  # tests/ imported as a package
    from tests.analysis_fixtures import ClaimScenario, scenario_frames, write_export

ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)
TRUE = ClaimScenario(medical=True)
FALSE = {  # claim -> a scenario where that claim is false
    "in_domain_parity": ClaimScenario(gains={"attention_unet": dict.fromkeys(ALPHAS, 0.05)}),
    "attention_gain_grows": ClaimScenario(gains={"attention_unet": {0.1: 0.05, 0.3: 0.15}}),
    "unet_noisier": ClaimScenario(seed_noise={"noskip_unet": 0.03, "unet": 0.005}),
    "ood_cross_alpha": ClaimScenario(ood_loss={"noskip_unet": 0.5, "unet": 0.1, "attention_unet": 0.1}),
    "ood_test_levels": ClaimScenario(ood_loss={"noskip_unet": 0.5, "unet": 0.1, "attention_unet": 0.1}, medical=True),
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


def test_every_claim_supported_where_the_data_make_it_true(tmp_path):
    verdicts = verdicts_of(TRUE, tmp_path)
    assert list(verdicts.columns) == VERDICT_COLUMNS
    assert by_claim(verdicts) == {claim.name: {SUPPORTS} for claim in CLAIMS}
    rows = verdicts.set_index(["claim", "dataset", "variant"])
    # attention_unet gains 0.20 at alpha 0.1 and 0.08 at 0.3 over noskip's 0.54 and 0.62: parity from alpha 0.5 up.
    assert_allclose(rows.loc[("in_domain_parity", "synthetic", "unet, attention_unet"), "value"], 0.5)
    assert "stop being significant above alpha 0.30" in verdicts.loc[0, "measured"]
    # at alpha 0.1 attention_unet scores 0.74, noskip 0.54 +- 0.005 by seed: mean of 0.195 / 0.545 and 0.205 / 0.535.
    assert_allclose(
        rows.loc[("attention_gain_grows", "synthetic", "attention_unet"), "value"], (0.195 / 0.545 + 0.205 / 0.535) / 2
    )
    # seed offsets +-0.03 (unet) vs +-0.005 (noskip): unet noisier at every level.
    assert_allclose(rows.loc[("unet_noisier", "synthetic", "unet"), "value"], 1.0)
    # drop per unit |a - b|: 0.5 vs 0.1; mean |a - b| over the 20 off-diagonal cells is 0.4 -> extra drop 0.16.
    assert_allclose(rows.loc[("ood_cross_alpha", "synthetic", "unet"), "value"], 0.16)
    # harder loses 0.5 x loss, easier 0.25 x loss: extra drops 0.2 and 0.1 -> 0.15, medical data set too.
    assert_allclose(rows.loc[("ood_test_levels", "busi", "attention_unet"), "value"], 0.15)
    assert set(verdicts["dataset"]) == {"synthetic", "busi"}


@pytest.mark.parametrize("claim", sorted(FALSE))
def test_each_claim_contradicted_where_the_data_make_it_false(claim, tmp_path):
    verdicts = verdicts_of(FALSE[claim], tmp_path)
    assert by_claim(verdicts)[claim] == {CONTRADICTS}
    if claim in {"unet_noisier", "ood_cross_alpha", "ood_test_levels", "attention_gain_grows"}:
        assert by_claim(verdicts)["in_domain_parity"] == {SUPPORTS}  # the other claims are still tested


def test_contradicted_claims_say_what_was_measured(tmp_path):
    verdicts = verdicts_of(FALSE["in_domain_parity"], tmp_path).set_index("claim")
    # a constant gain of 0.05 is significant at the easiest alpha, so differences never stop, and gains everywhere
    # are not a gain that sets in below some alpha.
    assert verdicts.loc["in_domain_parity", "measured"].startswith("a variant differs at the easiest alpha 0.90")
    assert pd.isna(verdicts.loc["in_domain_parity", "value"])
    assert verdicts.loc["attention_gain_grows", "verdict"] == CONTRADICTS
    noisy = verdicts_of(FALSE["unet_noisier"], tmp_path).set_index("claim").loc["unet_noisier"]
    assert noisy["value"] == 0.0 and "ratio 0.17" in noisy["measured"]


def test_inconclusive_when_the_study_cannot_test_a_claim(tmp_path):
    scenario = ClaimScenario(seeds=(0,), variants=("noskip_unet", "unet"), level_ts={"in_domain": 1.0})
    verdicts = verdicts_of(scenario, tmp_path).set_index(["claim", "variant"])
    reasons = {
        ("in_domain_parity", "unet, attention_unet"): "attention_unet not in the study",
        ("attention_gain_grows", "attention_unet"): "attention_unet not in the study",
        ("unet_noisier", "unet"): "1 seed: no spread across seeds",
        ("ood_cross_alpha", "attention_unet"): "attention_unet not in the study",
        ("ood_test_levels", "unet"): "only the in_domain test level",
    }
    for key, reason in reasons.items():
        assert verdicts.loc[key, "verdict"] == INCONCLUSIVE and verdicts.loc[key, "measured"] == reason, key
    assert verdicts.loc[("ood_cross_alpha", "unet"), "verdict"] == SUPPORTS  # one seed still pairs images


def test_no_synthetic_data_and_a_claim_of_ones_own(tmp_path):
    medical_only = dataclasses.replace(TRUE, alphas=())
    verdicts = verdicts_of(medical_only, tmp_path).set_index("claim")
    assert verdicts.loc["in_domain_parity", "measured"] == "the study has no cross-alpha (synthetic) results"
    assert set(verdicts.loc["ood_test_levels", "verdict"]) == {SUPPORTS}
    mine = Claim(name="unet_parity", statement="unet matches noskip", kind="parity_above", variants=("unet",))
    assert verdicts_of(TRUE, tmp_path, claims=(mine,))["verdict"].tolist() == [SUPPORTS]
    with pytest.raises(ValueError, match="kind 'typo' is not one of"):
        Claim(name="bad", statement="", kind="typo", variants=("unet",))


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
    assert text.index("## Claims of Kamath et al., MICCAI 2023") < text.index("## In-domain relative improvement")
    assert "(7 SUPPORTS, 0 CONTRADICTS, 0 INCONCLUSIVE; [CSV](tables/claims.csv))" in text
    claims = pd.read_csv(folder / "tables" / "claims.csv")
    assert set(claims["verdict"]) == {SUPPORTS} and len(claims) == 7
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


def test_report_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "report.md"
    report_module._write_atomic(path, "old report\n")
    assert path.read_text() == "old report\n" and oct(path.stat().st_mode & 0o777) == "0o644"

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(report_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        report_module._write_atomic(path, "new report\n")
    assert path.read_text() == "old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_equal_spread_across_seeds_is_neither_noisier_nor_quieter(tmp_path):
    equal = ClaimScenario(alphas=(0.5, 0.9), n_images=2, seed_noise={"noskip_unet": 0.02, "unet": 0.02})
    noisier = [claim for claim in CLAIMS if claim.name == "unet_noisier"]
    verdict = verdicts_of(equal, tmp_path, claims=noisier).iloc[0]
    assert verdict["verdict"] == INCONCLUSIVE and verdict["value"] == 0.0
    assert "higher than noskip_unet's at 0% of 2 levels" in verdict["measured"]
