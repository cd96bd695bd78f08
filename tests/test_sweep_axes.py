"""Sweep axes: any field of model, training or evaluation as a grid axis beside variant, alpha, seed and data set.

Refused in one line before anything starts when an axis or a value is wrong; part of the trial key (a rerun
skips what finished, a new value runs only its trials); on each run as its params and a tag; exported as
``sweep.<key>`` columns; a report compares variants within each slice of the sweep and says whether the
papers' verdicts hold across it (``export --where`` exports one slice).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from sweeps import orchestrate, trial_runs, write_study
from trial_studies import small_study

from analysis.__main__ import main as analysis_main
from orchestrator.expand import expand, trial_table
from orchestrator.run import main
from trainables.config import load_study, parse_study

CONF = Path(__file__).parents[1] / "conf"


@pytest.mark.parametrize(
    ("sweep", "says"),
    [
        ({"training.learnin_rate": [1e-3]}, "sweep.training.learnin_rate: training has no field 'learnin_rate'"),
        ({"datasets.synthetic.levels": [[0.5]]}, "sweep.datasets.synthetic.levels: not a sweepable field"),
        ({"training": [1]}, "sweep.training: not a sweepable field"),
        ({"training.learning_rate": ["fast"]}, 'sweep (training.learning_rate = "fast"): training.learning_rate:'),
        ({"training.learning_rate": [1e-3, 0.001]}, "sweep.training.learning_rate: a value is listed twice"),
        ({"training.learning_rate": []}, "sweep.training.learning_rate: give at least one value"),
        ({"model.channels": [[4, 8]]}, "sweep (model.channels = [4,8]): model: 2 channels need 1 strides, got 2"),
        ({"training.epochs": [2, 10**12]}, "sweep (training.epochs = 1000000000000): training.epochs:"),
        ({"training.learning_rate": 0.001}, "sweep.training.learning_rate: Input should be a valid"),
    ],
)
def test_a_bad_axis_is_refused_in_one_line_naming_it_before_anything_is_created(
    tmp_path: Path, capsys, sweep: dict, says: str
) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(small_study("swept", sweep=sweep, storage={"results": str(tmp_path / "out")})))
    assert main(["--config", str(study), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and says in error, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


def test_an_axis_also_set_per_data_set_is_refused_saying_which_would_win() -> None:
    from trainables.config import StudyConfigError

    glas = {"path": "/data/glas", "training": {"learning_rate": 0.1}}  # medical data sets take overrides
    levels = {"in_domain": {"kind": "none"}}
    raw = small_study("clash", sweep={"training.learning_rate": [1e-3, 1e-2]}, test_levels=levels)
    raw["datasets"]["glas"] = glas
    with pytest.raises(StudyConfigError, match=r"datasets\.glas\.training\.learning_rate sets it too"):
        parse_study(raw, source="clash.yaml")
    raw["datasets"]["glas"] = {"path": "/data/glas", "training": {"epochs": 1}}
    study = parse_study(raw)  # another field per data set keeps working
    assert study.for_trial("glas", {"training.learning_rate": 1e-3}).training.epochs == 1
    assert study.for_trial("glas", {"training.learning_rate": 1e-3}).training.learning_rate == 1e-3


def test_axes_are_part_of_the_key_and_a_study_without_one_keeps_its_trial_ids() -> None:
    quick = load_study(CONF / "quick.yaml")
    assert expand(quick)[0].trial_id == "33bc9a8ff2a7"  # its id before sweeps existed: old runs are found again
    raw = yaml.safe_load((CONF / "quick.yaml").read_text())
    swept = parse_study(
        {**raw, "sweep": {"training.learning_rate": [1e-2, 1e-3], "model.channels": [[8, 16, 32, 64, 128]]}}
    )
    assert swept.config_hash() == quick.config_hash()  # the sweep is grid: old runs stay comparable
    specs = expand(swept)
    assert len(specs) == 2 * len(expand(quick))
    assert specs[0].axis_values == {"model.channels": (8, 16, 32, 64, 128), "training.learning_rate": 0.001}
    assert specs[0].run_name == "noskip_unet a0.10 s0 channels=[8,16,32,64,128] learning_rate=0.001 synthetic"
    assert len({spec.trial_id for spec in specs}) == len(specs)
    assert swept.for_trial("synthetic", specs[1].axis_values).training.learning_rate == 0.01
    assert swept.for_trial("synthetic", specs[1].axis_values).model.channels == (8, 16, 32, 64, 128)
    table = trial_table(specs, swept, {"unet": 1.0, "noskip_unet": 1.0})
    assert "  per training.learning_rate: 0.001 6, 0.01 6" in table
    assert "  per model.channels: [8,16,32,64,128] 12" in table
    more = parse_study(
        {**raw, "sweep": {"training.learning_rate": [1e-3, 1e-2, 1e-1], "model.channels": [[8, 16, 32, 64, 128]]}}
    )
    assert {s.trial_id for s in specs} < {s.trial_id for s in expand(more)}  # a new value adds only its trials


def test_the_dry_run_prints_the_axes_and_their_trials(tmp_path: Path, capsys) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(small_study("dry", sweep={"training.learning_rate": [1e-3, 1e-2]})))
    assert main(["--config", str(study), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "study dry: 2 trial(s)" in out and "per training.learning_rate: 0.001 1, 0.01 1" in out
    assert "unet a1.00 s0 learning_rate=0.01 synthetic" in out


@pytest.mark.slow
def test_a_swept_study_runs_resumes_with_a_new_value_and_reports_one_slice(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study = write_study(
        tmp_path, "lr", epochs=1, variants=["unet"], datasets={"synthetic": {"levels": [1.0]}},
        sweep={"training.learning_rate": [1e-3, 1e-2]},
    )  # fmt: skip
    first = orchestrate(study, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    runs = trial_runs(uri, "lr")
    assert sorted(r.data.params["learning_rate"] for r in runs) == ["0.001", "0.01"]
    assert sorted(r.data.params["training.learning_rate"] for r in runs) == ["0.001", "0.01"]  # the axis itself
    assert sorted(json.loads(r.data.tags["skipsweep.sweep"])["training.learning_rate"] for r in runs) == [1e-3, 1e-2]

    raw = yaml.safe_load(study.read_text())
    raw["sweep"]["training.learning_rate"].append(1e-1)
    study.write_text(yaml.safe_dump(raw))
    second = orchestrate(study, tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "3 trials; 2 already finished in MLflow, 1 to run" in second.stdout + second.stderr
    assert len(trial_runs(uri, "lr")) == 3

    whole, one = tmp_path / "whole", tmp_path / "one"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert analysis_main(["export", "--study", "lr", "--tracking-uri", uri, "--out", str(whole)]) == 0
        runs_table = __import__("pandas").read_parquet(whole / "runs.parquet")
        assert sorted(runs_table["sweep.training.learning_rate"]) == [0.001, 0.01, 0.1]
        assert analysis_main(["report", str(whole), "--resamples", "100", "--baseline", "unet"]) == 0
        top = (whole / "report.md").read_text()
        assert "## Do the verdicts hold across training.learning_rate?" in top and "3 slices" in top
        for value in ("0.001", "0.01", "0.1"):
            assert f"[learning_rate={value}](slices/learning_rate={value}/report.md)" in top
            part = (whole / "slices" / f"learning_rate={value}" / "report.md").read_text()
            assert f"- sweep: training.learning_rate = {value}" in part and "- finished trial runs: 1" in part
            assert f"predictions/synthetic_unet_a1.00_s0_learning_rate={value}.png" in part
            assert (whole / "predictions" / f"synthetic_unet_a1.00_s0_learning_rate={value}.png").is_file()
        across = __import__("pandas").read_csv(whole / "tables" / "verdicts_across_sweep.csv")
        assert list(across.columns)[-4:] == ["learning_rate=0.001", "learning_rate=0.01", "learning_rate=0.1", "across"]
        where = ["--where", "training.learning_rate=1e-2"]
        assert analysis_main(["export", "--study", "lr", "--tracking-uri", uri, "--out", str(one), *where]) == 0
        assert analysis_main(["report", str(one), "--resamples", "100", "--baseline", "unet"]) == 0
        assert "- sweep: training.learning_rate = 0.01" in (one / "report.md").read_text()
        assert not (one / "slices").exists()
        capsys.readouterr()
        bad = ["--where", "training.lr=1"]
        assert (
            analysis_main(["export", "--study", "lr", "--tracking-uri", uri, "--out", str(tmp_path / "x"), *bad]) == 2
        )
        assert (
            "--where training.lr: not a sweep axis of study lr (its axes: training.learning_rate)"
            in capsys.readouterr().err
        )
    client = MlflowClient(uri)
    assert client.get_experiment_by_name("lr") is not None


def test_whether_a_verdict_holds_across_the_slices_is_read_from_every_slice() -> None:
    import pandas as pd

    from analysis.report.across import holds_across

    def slice_verdicts(*verdicts: str) -> pd.DataFrame:
        rows = [{"claim": f"c{i}", "dataset": "synthetic", "variant": "unet", "verdict": v, "value": 0.01 * i}
                for i, v in enumerate(verdicts)]  # fmt: skip
        return pd.DataFrame(rows)

    first = slice_verdicts("SUPPORTS", "CONTRADICTS", "SUPPORTS", "SUPPORTS", "INCONCLUSIVE")
    second = slice_verdicts("SUPPORTS", "CONTRADICTS", "CONTRADICTS", "INCONCLUSIVE", "INCONCLUSIVE")
    table = holds_across([first, second], ["lr=0.001", "lr=0.01"])
    assert table["across"].tolist() == ["holds", "fails", "depends", "partly decided", "undecided"]
    assert table.loc[1, "lr=0.01"] == "CONTRADICTS (+0.01)" and table.loc[4, "lr=0.001"] == "INCONCLUSIVE (+0.04)"
    only_once = holds_across([first, first.iloc[:1]], ["a", "b"])  # a unit one slice could not check at all
    assert only_once.loc[2, "b"] == "-" and only_once.loc[2, "across"] == "partly decided"


def test_the_ui_view_of_a_swept_study_draws_dice_against_each_axis() -> None:
    from orchestrator.driver import experiment_tags
    from trainables.tracking.view import VIEW_TAG

    study = load_study(CONF / "lr_sensitivity_cpu.yaml")
    view = json.loads(experiment_tags(study, str(CONF / "lr_sensitivity_cpu.yaml"), "sqlite:///x.db")[VIEW_TAG])
    sections = {s["uuid"]: s["name"] for s in view["compareRunSections"]}
    swept = [
        c for c in view["compareRunCharts"] if sections[c["metricSectionId"]] == "Dice against training.learning_rate"
    ]
    assert [(c["xaxis"]["key"], c["yaxis"]["key"]) for c in swept] == [
        ("training.learning_rate", "dice_in_domain"),
        ("training.learning_rate", "dice_out_of_domain_mean"),
    ]
    assert "params.`training.learning_rate`" in view["selectedColumns"]


@pytest.mark.slow
def test_the_committed_learning_rate_report_rebuilds_from_its_parquet_with_the_numbers_its_readme_quotes(
    tmp_path: Path,
) -> None:
    import shutil

    import pandas as pd

    from analysis.report import build_report

    committed = Path(__file__).parents[1] / "docs" / "lr_sensitivity_cpu"
    keep = shutil.ignore_patterns("figures", "tables", "slices", "report.md")
    shutil.copytree(committed, tmp_path / "lr", ignore=keep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = build_report(tmp_path / "lr").report.read_text()
    assert text == (committed / "report.md").read_text()  # the committed top report is what this code writes
    assert (tmp_path / "lr" / "slices" / "learning_rate=0.0001" / "report.md").read_text() == (
        committed / "slices" / "learning_rate=0.0001" / "report.md"
    ).read_text()
    runs = pd.read_parquet(committed / "runs.parquet")
    means = runs.pivot_table(
        index="variant", columns="sweep.training.learning_rate", values="dice_in_domain", aggfunc="mean"
    )
    readme = (committed / "README.md").read_text()
    for variant, row in means.iterrows():
        assert f"| {variant} | " + " | ".join(f"{v:.3f}" for v in row) + " |" in readme
