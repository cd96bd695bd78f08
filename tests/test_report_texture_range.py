"""The journal's texture-range sentence, checked on a swept export (training.train_range: narrow vs wide).

Hand-made exports (tests/analysis_fixtures.py): each variant's out-of-domain loss is set per range, so the
robustness gap and its reduction are known.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from analysis_fixtures import ClaimScenario, scenario_frames, write_export

from analysis.claims import CONTRADICTS, SUPPORTS
from analysis.frames import load_export
from analysis.report import build_report
from analysis.report.texture_range import model_drops, texture_range_section, texture_range_verdict
from analysis.report.writer import Writer

AXIS = "sweep.training.train_range"


def _export(tmp_path, narrow_loss: dict, wide_loss: dict):
    runs, images = [], []
    for value, loss in ((0.0, narrow_loss), (0.4, wide_loss)):
        scenario = ClaimScenario(variants=("noskip_unet", "unet"), gains={}, jagged={}, ood_loss=loss)
        part_runs, part_images = scenario_frames(scenario)
        suffix = f"-r{value:g}"
        part_runs = part_runs.assign(run_id=part_runs["run_id"] + suffix, run_name=part_runs["run_name"] + suffix)
        part_runs[AXIS] = value
        runs.append(part_runs)
        images.append(part_images.assign(run_id=part_images["run_id"] + suffix))
    return write_export(tmp_path / "export", pd.concat(runs), pd.concat(images), study="ranges")


def _report(folder) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_report(folder, n_resamples=100).report.read_text()


def test_a_gap_that_closes_with_the_wider_range_supports_the_journal(tmp_path) -> None:
    study = load_export(_export(tmp_path, {"noskip_unet": 0.1, "unet": 0.5}, {"noskip_unet": 0.1, "unet": 0.15}))
    verdict, measured, table = texture_range_verdict(model_drops(study), "noskip_unet")
    assert verdict == SUPPORTS and measured.startswith("unet on synthetic:")
    narrow, wide = table.loc[0, "narrow_mean"], table.loc[0, "wide_mean"]
    assert narrow > wide > 0 and table.loc[0, "reduction_mean"] == pytest.approx(narrow - wide)
    section = texture_range_section(Writer(tmp_path / "w"), study, "noskip_unet")
    assert section.startswith("## Does a wider texture range close the robustness gap?") and "**SUPPORTS.**" in section
    assert (tmp_path / "w" / "tables" / "texture_range_gaps.csv").is_file()


def test_the_same_gap_at_both_ranges_contradicts_it(tmp_path) -> None:
    folder = _export(tmp_path, {"noskip_unet": 0.1, "unet": 0.5}, {"noskip_unet": 0.1, "unet": 0.5})
    verdict, measured, table = texture_range_verdict(model_drops(load_export(folder)), "noskip_unet")
    assert verdict == CONTRADICTS and measured.startswith("no variant's gap narrows by more than +-0.02 Dice")
    assert table.loc[0, "narrow_mean"] > 0 and table.loc[0, "reduction_mean"] == 0


def test_a_sweep_of_another_field_has_no_texture_range_section(tmp_path) -> None:
    study = load_export(_export(tmp_path, {"unet": 0.5}, {"unet": 0.1}))
    other = replace(study, runs=study.runs.rename(columns={AXIS: "sweep.training.learning_rate"}))
    assert texture_range_section(None, other, "noskip_unet") == ""


@pytest.mark.slow
def test_the_committed_texture_range_report_rebuilds_with_the_numbers_its_readme_quotes(tmp_path) -> None:
    committed = Path(__file__).parents[1] / "docs" / "texture_range_cpu"
    shutil.copytree(committed, tmp_path / "t", ignore=shutil.ignore_patterns("figures", "tables", "slices", "*.md"))
    text = _report(tmp_path / "t")
    assert text == (committed / "report.md").read_text()
    assert "**INCONCLUSIVE.** unet on synthetic: gap +0.054 narrow, +0.057 wide, reduction -0.003" in text
    gaps = pd.read_csv(tmp_path / "t" / "tables" / "texture_range_gaps.csv").set_index("variant")
    assert (
        round(gaps.loc["unet", "narrow_ci_low"], 3) == 0.013
        and round(gaps.loc["attention_unet", "narrow_mean"], 3) == -0.040
    )


def test_the_report_header_lists_the_resource_shapes_the_trials_ran_with() -> None:
    from analysis.report import resource_shapes

    runs = pd.DataFrame(
        {
            "param.resources.cpu": [1.0, 1.0, 0.5],
            "param.resources.gpu": [0.25, 0.25, 0.0],
            "param.device": ["cuda", "cuda", "cpu"],
        }
    )
    assert resource_shapes(runs) == "0.5 CPU + 0 GPU, on cpu (1 runs); 1 CPU + 0.25 GPU, on cuda (2 runs)"
    assert resource_shapes(runs.drop(columns="param.device")) == ""  # runs from before these params
    older = pd.concat([runs, pd.DataFrame({"param.resources.cpu": [None], "param.device": [None]})])
    assert resource_shapes(older) == (  # a study resumed across that change: no "nan CPU"
        "0.5 CPU + 0 GPU, on cpu (1 runs); 1 CPU + 0.25 GPU, on cuda (2 runs); not recorded (1 runs, older than these "
        "params)"
    )
