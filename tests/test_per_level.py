"""A medical data set's scores per test level and variant with seed-level intervals, and one data set's counts.

The scenario (tests/analysis_fixtures.py) gives each model of a medical data set the in-domain Dice
0.78 (+0.1 for the attention U-Net) plus a seed offset, scaled by (1 - ood_loss x 0.5) on "harder".
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from analysis_fixtures import ClaimScenario, scenario_frames, write_export

from analysis.claims import CLAIMS, evaluate_claims
from analysis.claims.evidence import Evidence
from analysis.frames import image_scores, load_export
from analysis.report import build_report
from analysis.report.per_level import per_level_table

GLAS = ClaimScenario(medical=("glas",), alphas=(0.1, 0.9), hd95=True)


def evidence_of(scenario: ClaimScenario, tmp_path) -> Evidence:
    runs, per_image = scenario_frames(scenario)
    study = load_export(write_export(tmp_path / "export", runs, per_image))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Evidence(image_scores(study.runs, study.per_image), n_resamples=20)


def test_each_cell_is_the_mean_of_the_models_with_a_t_interval_over_seeds(tmp_path) -> None:
    table = per_level_table(evidence_of(GLAS, tmp_path), "glas", "dice").set_index(["variant", "level"])
    assert list(dict.fromkeys(table.index.get_level_values("level"))) == ["harder", "in_domain", "easier"]
    cell = table.loc[("unet", "harder")]
    # seed offsets 0.012 x (1, -1, .5, -.5, 0): mean 0.78 x (1 - 0.5 x 0.5); their sd is 0.012 x sqrt(0.625) x 0.75
    spread = 0.012 * np.sqrt(0.625) * 0.75 * 2.7764451 / np.sqrt(5)  # t(0.975, df 4)
    assert cell["n_seeds"] == 5
    assert cell["mean"] == pytest.approx(0.78 * 0.75, abs=1e-9)
    assert [cell["ci_low"], cell["ci_high"]] == pytest.approx([0.585 - spread, 0.585 + spread], abs=1e-6)
    best = table[table["best"]].reset_index().set_index("level")["variant"].to_dict()
    assert best == {"harder": "noskip_unet", "in_domain": "attention_unet", "easier": "attention_unet"}
    distances = per_level_table(evidence_of(GLAS, tmp_path / "hd"), "glas", "hd95")
    assert distances[distances["best"]].set_index("level").loc["harder", "variant"] == "noskip_unet"  # lowest


def test_the_report_shows_the_table_and_the_one_data_set_caveat(tmp_path) -> None:
    runs, per_image = scenario_frames(GLAS)
    write_export(tmp_path / "export", runs, per_image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = build_report(tmp_path / "export", n_resamples=20).report.read_text()
    assert "## Per test level, with the trained model as the unit" in text
    assert "### glas: Dice (higher is better)" in text and "### glas: HD95 (lower is better)" in text
    assert "| unet | 0.585 [0.57" in text
    assert (tmp_path / "export" / "tables" / "per_level_glas_dice.csv").is_file()
    assert "cannot settle the paper's count of 5/8" in text


def test_the_journal_counts_say_how_many_of_its_four_data_sets_they_rest_on(tmp_path) -> None:
    counts = [claim for claim in CLAIMS if claim.kind == "group_best_on_levels"]
    for scenario, expected in ((GLAS, "1 of the journal's 4 data sets (glas)"), (None, None)):
        scenario = scenario or dataclasses.replace(GLAS, medical=("busi", "spleen", "heart", "glas"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            verdicts = evaluate_claims(evidence_of(scenario, tmp_path / str(len(scenario.medical))), counts)
        for measured in verdicts["measured"]:
            assert (expected in measured) if expected else ("cannot settle" not in measured), measured
        assert set(verdicts["verdict"]) == {"SUPPORTS"}  # No-Skip loses least on "harder" in every case


def test_medical_runs_are_held_to_the_papers_medical_learning_rate() -> None:
    import pandas as pd

    from analysis.report.summary import difference_lines

    class NoMedical:
        def level_datasets(self, medical: bool = False) -> list[str]:
            return ["glas"]

    def runs(rows: list[tuple]) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=["dataset", "variant", "train_alpha", "seed", "param.learning_rate"])
        return frame.assign(**{"param.image_size": 256, "param.epochs": 100, "param.batch_size": 8})

    medical = runs([("glas", "unet", None, seed, 0.01) for seed in range(3)])
    assert difference_lines(medical, NoMedical()) == []  # 1e-2 is the papers' medical rate
    both = runs(
        [
            *[("glas", "unet", None, s, 0.001) for s in range(3)],
            *[("synthetic", "unet", 0.5, s, 0.01) for s in range(3)],
        ]
    )
    assert difference_lines(both, NoMedical())[:2] == [
        "- learning rate (synthetic): 0.01 (paper: 0.001)",
        "- learning rate (medical): 0.001 (paper: 0.01)",
    ]


def test_the_committed_glas_report_rebuilds_from_its_parquet_with_the_numbers_its_readme_quotes(tmp_path) -> None:
    import shutil
    from pathlib import Path

    committed = Path(__file__).parents[1] / "docs" / "glas_cpu"
    shutil.copytree(committed, tmp_path / "glas", ignore=shutil.ignore_patterns("figures", "tables", "report.md"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = build_report(tmp_path / "glas").report.read_text()
    readme = (committed / "README.md").read_text()
    for row in (
        "| attention_unet | **0.642 [0.588, 0.696]** | **0.728 [0.683, 0.772]** | **0.831 [0.810, 0.852]** |",
        "| noskip_unet | 0.533 [0.357, 0.709] | 0.653 [0.585, 0.721] | 0.702 [0.674, 0.729] |",
    ):
        assert row in text and row in readme
    assert text.count("**CONTRADICTS** | No-Skip significantly best in 0/2 cases") == 2
    assert (committed / "figures" / "ts_axis.png").is_file()
