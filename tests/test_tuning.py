"""The tuning stage (--tune): its study section, the values it pins, and a real tuning on Ray Tune with ASHA."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, kill_group, subprocess_env
from mlflow.tracking import MlflowClient
from sweeps import orchestrate, orchestrate_command, trial_runs, wait_for
from trial_studies import merged, small_study

from analysis.export.tables import ExportError, tuned_columns
from analysis.report.tuning import tuning_section, tuning_table
from analysis.report.writer import Writer
from orchestrator.expand import expand
from orchestrator.run import main
from orchestrator.tuning import choose, resolved_path, resolved_study, study_defaults, tuning_groups, write_resolved
from orchestrator.tuning_ray import TriedConfiguration, as_tune_point, sampled_values
from trainables.config import StudyConfigError, load_study, parse_study
from trainables.schema import (
    KIND_TAG,
    TRIAL_KIND,
    TUNE_OUTCOME_TAG,
    TUNED_TAG,
    TUNING_GROUP_TAG,
    TUNING_KIND,
    TUNING_TRIAL_KIND,
)
from trainables.spec import TrialSpec
from trainables.trial import run_trial

TUNE = {
    "space": {
        "training.learning_rate": {"loguniform": [1.0e-4, 1.0e-2]},
        "training.batch_size": {"choice": [2, 4]},
    },
    "samples": 3,
    "max_epochs": 3,
    "grace_epochs": 1,
    "reduction_factor": 2,
}


def tuned_study(name: str = "tuned", **changes) -> dict:
    base = small_study(
        name,
        variants=["noskip_unet", "unet"],
        datasets={"synthetic": {"levels": [0.5, 1.0]}},
        training={"learning_rate": 1.0e-3},
        tune=TUNE,
    )
    return merged(base, changes)


def refusal(document: dict) -> str:
    with pytest.raises(StudyConfigError) as refused:
        parse_study(document, "study.yaml")
    message = str(refused.value)
    assert len(message.splitlines()) == 1, message
    return message


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"space": {"training.learnin_rate": {"uniform": [0, 1]}}}, "training.learnin_rate: training has no"),
        ({"space": {"optimizer.lr": {"uniform": [0, 1]}}}, "tune.space.optimizer.lr: not a sweepable field"),
        ({"space": {"training.learning_rate": {"loguniform": [0, 1]}}}, "loguniform: low must be > 0"),
        ({"space": {"training.learning_rate": {"uniform": [0.1, 0.01]}}}, "low < high"),
        ({"space": {"training.batch_size": {"choice": [2, 2]}}}, "choice: a value is listed twice"),
        ({"space": {"training.learning_rate": {"uniform": [0.1, 0.2], "choice": [1]}}}, "exactly one of"),
        ({"space": {"training.epochs": {"choice": [2, 3]}}}, "tune.space.training.epochs: set by the tuning stage"),
        ({"space": {"training.batch_size": {"choice": [0, 4]}}}, "space.training.batch_size (training.batch_size = 0)"),
        ({"grace_epochs": 5}, "grace_epochs 5 exceeds max_epochs 3"),
        ({"train_alpha": 0.7}, "tune.train_alpha: 0.7 is not a level of datasets.synthetic"),
        ({"samples": 0}, "tune.samples"),
    ],
)  # fmt: skip
def test_a_bad_tune_section_is_one_line_naming_the_key(change: dict, fragment: str) -> None:
    document = tuned_study()
    document["tune"] = {**document["tune"], **change}
    assert fragment in refusal(document)


def test_tune_and_sweep_on_one_field_or_tune_beside_tuned_values_are_refused() -> None:
    swept = tuned_study(sweep={"training.learning_rate": [1e-3, 1e-2]})
    assert "tune.space.training.learning_rate: also a sweep axis" in refusal(swept)
    both = tuned_study(tuned={"unet": {"synthetic": {"values": {"training.learning_rate": 1e-3}}}})
    assert "already has tuned values" in refusal(both)


@pytest.mark.parametrize(
    ("tuned", "fragment"),
    [
        ({"vnet": {"synthetic": {"values": {"training.learning_rate": 1e-3}}}}, "tuned.vnet: not a variant"),
        ({"unet": {"busi": {"values": {"training.learning_rate": 1e-3}}}}, "tuned.unet.busi: not a data set"),
        ({"unet": {"synthetic": {"values": {"training.batch_size": -1}}}}, "unet.synthetic (training.batch_size = -1)"),
        ({"unet": {"synthetic": {"values": {}}}}, "tuned.unet.synthetic.values"),
    ],
)  # fmt: skip
def test_bad_tuned_values_are_refused(tuned: dict, fragment: str) -> None:
    document = small_study("t", variants=["noskip_unet", "unet"], tuned=tuned)
    assert fragment in refusal(document)


def test_tuned_values_set_the_trial_and_enter_its_key_only_where_given() -> None:
    plain = parse_study(small_study("t", variants=["noskip_unet", "unet"]))
    tuned = parse_study(
        small_study(
            "t",
            variants=["noskip_unet", "unet"],
            tuned={"unet": {"synthetic": {"values": {"training.learning_rate": 0.005, "training.batch_size": 2}}}},
        )
    )
    before = {spec.variant: spec for spec in expand(plain)}
    after = {spec.variant: spec for spec in expand(tuned)}
    assert after["noskip_unet"] == before["noskip_unet"]  # no tuned values: the same trial, the same id
    assert after["noskip_unet"].trial_id == before["noskip_unet"].trial_id
    assert after["unet"].trial_id != before["unet"].trial_id  # other values, another trial
    assert after["unet"].run_name == before["unet"].run_name  # names carry the grid, not the tuning
    view = tuned.for_trial("synthetic", after["unet"].field_values)
    assert (view.training.learning_rate, view.training.batch_size) == (0.005, 2)
    assert after["unet"].params()["training.learning_rate"] == "0.005"
    assert tuned.config_hash() == plain.config_hash()  # each run records its own values, as with a sweep
    again = TrialSpec(
        **{**after["unet"].__dict__, "tuned": [["training.batch_size", 2], ["training.learning_rate", 0.005]]}
    )
    assert again.trial_id == after["unet"].trial_id  # Tune's config hands lists back in any order


def test_groups_defaults_and_the_choice_of_the_best_configuration() -> None:
    study = parse_study(tuned_study())
    groups = tuning_groups(study)
    assert [(g.variant, g.dataset, g.train_alpha) for g in groups] == [
        ("noskip_unet", "synthetic", 0.5),
        ("unet", "synthetic", 0.5),
    ]
    assert len({group.group_id for group in groups}) == 2
    other = parse_study(tuned_study(tune={"samples": 4}))
    assert tuning_groups(other)[0].group_id != groups[0].group_id  # another budget is another tuning
    assert study_defaults(study, "synthetic") == {"training.learning_rate": 1e-3, "training.batch_size": 4}
    outside = parse_study(tuned_study(training={"learning_rate": 0.5}))
    assert study_defaults(outside, "synthetic") is None  # no baseline rather than one outside the space

    def tried(lr, batch, dice, epochs=3):
        return TriedConfiguration({"training.learning_rate": lr, "training.batch_size": batch}, dice, epochs, False)

    configs = [tried(1e-3, 4, 0.50), tried(2e-3, 2, 0.61), tried(5e-3, 2, 0.61), tried(1e-4, 4, None, 0)]
    failed = TriedConfiguration({"training.learning_rate": 9e-3, "training.batch_size": 2}, 0.9, 2, True)
    assert choose([*configs, failed], None)[0] is configs[1]  # a configuration that failed is never chosen
    best, own = choose(configs, {"training.learning_rate": 1e-3, "training.batch_size": 4})
    assert best is configs[1] and own is configs[0]  # ties: the first tried; a configuration without a score never wins
    assert choose([tried(1e-4, 4, None, 0)], None) == (None, None)


def test_tune_configurations_round_trip_through_tunes_own_terms() -> None:
    space = parse_study(
        tuned_study(tune={"space": {"model.channels": {"choice": [[4, 8, 16], [8, 16, 32]]}}})
    ).tune.space
    point = as_tune_point(
        {"training.learning_rate": 0.001, "training.batch_size": 4, "model.channels": [8, 16, 32]}, space
    )
    assert point["model.channels"] == "[8, 16, 32]" and point["training.batch_size"] == "4"  # Optuna takes strings
    values = sampled_values({**point, "training.learning_rate": 0.0012345678}, space)
    assert values == {"training.learning_rate": 0.00123, "training.batch_size": 4, "model.channels": [8, 16, 32]}


def test_the_resolved_study_renames_drops_tune_and_pins_values(tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(tuned_study("lr")))
    study = parse_study(tuned_study("lr"))
    entry = {
        "values": {"training.learning_rate": 0.002, "training.batch_size": 2},
        "tuning_run": "abc",
        "val_dice": 0.6,
    }
    path = write_resolved(str(config), resolved_study(str(config), study, {"unet": {"synthetic": entry}}))
    assert path == resolved_path(str(config)) == tmp_path / "study_tuned.yaml"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml", "study_tuned.yaml"]  # no temporary file left
    document = yaml.safe_load(path.read_text())
    assert document["study"] == "lr_tuned" and "tune" not in document
    resolved = parse_study(document)
    assert resolved.tuned_values("unet", "synthetic") == {"training.learning_rate": 0.002, "training.batch_size": 2}
    assert resolved.tuned_values("noskip_unet", "synthetic") == {}
    with pytest.raises(StudyConfigError, match="tuned.unet.synthetic"):
        resolved_study(str(config), study, {"unet": {"synthetic": {**entry, "values": {"training.batch_size": 0}}}})


def test_tune_dry_run_prints_the_plan_and_a_study_without_tune_is_refused(tmp_path: Path, capsys) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(tuned_study("plan")))
    assert main(["--config", str(config), "--tune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 tuning(s) of 3 configuration(s) each" in out
    assert "at most 18 epochs in all" in out
    assert "tuning unet a0.50 synthetic" in out and "the study's own values first" in out
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(small_study("plain")))
    assert main(["--config", str(plain), "--tune", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--tune needs a tune: section" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.db").exists()


@pytest.mark.slow
def test_a_tuning_stopped_mid_way_resumes_then_pins_the_best_values_which_the_grid_trains_with(tmp_path: Path) -> None:
    name = "tuning"
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(tuned_study(name, tune={"max_epochs": 4}, resources={"cpu": 1, "gpu": 0})))
    uri = f"sqlite:///{tmp_path}/mlflow.db"

    driver = subprocess.Popen(
        orchestrate_command(config, tmp_path, "--tune"),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=(tmp_path / "first.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: trial_runs(uri, name, TUNING_TRIAL_KIND), 240, "a tuning configuration's run", while_running=driver
        )
        os.killpg(driver.pid, signal.SIGINT)
        assert driver.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        kill_group(driver.pid)
    first = (tmp_path / "first.log").read_text()
    assert "stopped by SIGINT" in first and "--tune" in first.splitlines()[-1], first[-2000:]
    assert not any(
        run.info.status == "RUNNING" for kind in (TUNING_KIND, TUNING_TRIAL_KIND) for run in trial_runs(uri, name, kind)
    )

    again = orchestrate(config, tmp_path, "--tune")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    parents = trial_runs(uri, name, TUNING_KIND)
    children = trial_runs(uri, name, TUNING_TRIAL_KIND)
    assert sorted(run.data.tags["variant"] for run in parents) == ["noskip_unet", "unet"]
    assert all(run.info.status == "FINISHED" for run in parents + children)
    assert not trial_runs(uri, name, TRIAL_KIND)  # tuning never makes a run the grid would count
    resolved = yaml.safe_load(resolved_path(str(config)).read_text())
    for parent in parents:
        group = parent.data.tags[TUNING_GROUP_TAG]
        mine = [run for run in children if run.data.tags[TUNING_GROUP_TAG] == group]
        assert len(mine) == 3, [run.info.run_name for run in mine]  # each configuration once, across the stop
        assert all(run.data.tags.get("mlflow.parentRunId") == parent.info.run_id for run in mine)
        assert all(not key.startswith(("test_", "dice_")) for run in mine for key in run.data.metrics)  # no test split
        assert {run.data.tags[TUNE_OUTCOME_TAG] for run in mine} <= {"completed", "stopped_early"}
        assert all(run.data.metrics["epochs_trained"] <= 4 for run in mine)
        top = max(run.data.metrics["best_val_dice"] for run in mine)
        entry = resolved["tuned"][parent.data.tags["variant"]]["synthetic"]
        assert entry["tuning_run"] == parent.info.run_id
        assert entry["val_dice"] == pytest.approx(top, abs=1e-6)
        best = [  # (ties: several configurations may reach the same Dice on so small a task)
            (float(run.data.params["training.learning_rate"]), int(run.data.params["training.batch_size"]))
            for run in mine
            if run.data.metrics["best_val_dice"] == pytest.approx(top, abs=1e-6)
        ]
        assert (entry["values"]["training.learning_rate"], entry["values"]["training.batch_size"]) in best
        assert TUNED_TAG in parent.data.tags and parent.data.metrics["configurations"] == 3
        own = [
            run
            for run in mine
            if run.data.params["training.learning_rate"] == "0.001" and run.data.params["training.batch_size"] == "4"
        ]
        assert len(own) == 1 and entry["default_val_dice"] == pytest.approx(
            own[0].data.metrics["best_val_dice"], abs=1e-6
        )

    started = time.monotonic()
    kept = orchestrate(config, tmp_path, "--tune")  # finished tunings are not run again
    assert kept.returncode == 0 and kept.stdout.count("tuned already") == 2, kept.stdout[-2000:]
    assert len(trial_runs(uri, name, TUNING_TRIAL_KIND)) == 6 and time.monotonic() - started < 120

    grid = load_study(resolved_path(str(config)))  # the final grid: one of its trials, as the sweep runs it
    spec = next(spec for spec in expand(grid) if spec.variant == "unet" and spec.train_alpha == 1.0)
    entry = resolved["tuned"]["unet"]["synthetic"]
    assert dict(spec.tuned) == entry["values"]
    result = run_trial(spec, grid, work_dir=tmp_path / "work", tracking_uri=uri, cache_root=tmp_path / "cache")
    run = MlflowClient(uri).get_run(result.run_id)
    assert float(run.data.params["learning_rate"]) == entry["values"]["training.learning_rate"]
    assert int(run.data.params["batch_size"]) == entry["values"]["training.batch_size"]
    assert yaml.safe_load(run.data.tags[TUNED_TAG])["tuning_run"] == entry["tuning_run"]
    assert run.data.tags[KIND_TAG] == TRIAL_KIND and run.data.tags["study"] == f"{name}_tuned"


def _run(tags: dict) -> SimpleNamespace:
    return SimpleNamespace(data=SimpleNamespace(tags=tags), info=SimpleNamespace(run_id="r1"))


def test_export_columns_and_the_report_section_of_a_tuned_study(tmp_path: Path) -> None:
    entry = {
        "values": {"training.learning_rate": 0.002, "model.channels": [4, 8, 16]},
        "tuning_run": "p1",
        "val_dice": 0.8,
        "default_val_dice": 0.7,
        "epochs": 3,
        "train_alpha": 0.5,
    }
    columns = tuned_columns(_run({TUNED_TAG: json.dumps(entry)}), "unet a0.50 s0 synthetic")
    assert columns == {
        "tuned.training.learning_rate": 0.002,
        "tuned.model.channels": "[4, 8, 16]",
        "tuning.run": "p1",
        "tuning.val_dice": 0.8,
        "tuning.default_val_dice": 0.7,
        "tuning.epochs": 3,
        "tuning.train_alpha": 0.5,
    }
    assert tuned_columns(_run({}), "plain") == {}
    with pytest.raises(ExportError, match="skipsweep.tuned is not a JSON object"):
        tuned_columns(_run({TUNED_TAG: "[1]"}), "broken")

    rows = []
    for variant, lr, tuned, own in (("unet", 0.002, 0.8, 0.7), ("noskip_unet", 0.0005, 0.6, None)):
        for seed in (0, 1):
            rows.append(
                {"dataset": "synthetic", "variant": variant, "seed": seed, "tuned.training.learning_rate": lr,
                 "tuning.val_dice": tuned, "tuning.default_val_dice": own, "tuning.epochs": 3,
                 "tuning.train_alpha": 0.5, "tuning.run": f"p-{variant}"}
            )  # fmt: skip
    table = tuning_table(pd.DataFrame(rows))
    assert list(table["variant"]) == ["noskip_unet", "unet"]
    assert table["gain"].iloc[1] == pytest.approx(0.1) and np.isnan(table["gain"].iloc[0])
    text = tuning_section(Writer(tmp_path), pd.DataFrame(rows))
    assert "| synthetic | unet | 0.002 | 0.800 | 0.700 | 0.100 | `p-unet` |" in text
    assert "| synthetic | noskip_unet | 0.0005 | 0.600 | NaN | - | `p-noskip_unet` |" in text
    assert "trained at different values of learning_rate" in text and "(alpha 0.50)" in text
    assert (tmp_path / "tables" / "tuning.csv").is_file()
    assert tuning_section(Writer(tmp_path), pd.DataFrame({"dataset": ["synthetic"], "variant": ["unet"]})) == ""


def test_the_dry_run_of_a_tuned_study_lists_each_variants_values(tmp_path: Path, capsys) -> None:
    values = {"training.learning_rate": 0.002, "training.batch_size": 2}
    config = tmp_path / "study.yaml"
    config.write_text(
        yaml.safe_dump(
            small_study("t", variants=["noskip_unet", "unet"], tuned={"unet": {"synthetic": {"values": values}}})
        )
    )
    assert main(["--config", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tuned unet on synthetic: training.batch_size = 2, training.learning_rate = 0.002" in out  # as the file
    assert "tuned noskip_unet" not in out


def test_the_tuning_view_charts_each_searched_field_for_tuning_trials_only() -> None:
    from orchestrator.driver import experiment_tags
    from trainables.tracking.view import TUNING_VIEW_TAG, VIEW_TAG

    study = parse_study(tuned_study("view"))
    tags = experiment_tags(study, "conf/quick.yaml", "sqlite:///m.db")
    view = json.loads(tags[TUNING_VIEW_TAG])
    assert view["searchFilter"] == f"tags.`{KIND_TAG}` = '{TUNING_TRIAL_KIND}'"
    assert view["orderByKey"] == "metrics.`best_val_dice`"  # flat: nested under their parents they chart nothing
    scatters = {(c["xaxis"]["key"], c["yaxis"]["key"]) for c in view["compareRunCharts"] if c["type"] == "SCATTER"}
    assert scatters == {("training.learning_rate", "best_val_dice"), ("training.batch_size", "best_val_dice")}
    assert "params.`training.learning_rate`" in view["selectedColumns"]
    assert json.loads(tags[VIEW_TAG])["searchFilter"] == f"tags.`{KIND_TAG}` = '{TRIAL_KIND}'"  # the grid's own
    plain = experiment_tags(parse_study(small_study("plain")), "conf/quick.yaml", "sqlite:///m.db")
    assert TUNING_VIEW_TAG not in plain


def test_the_search_is_optuna_or_tunes_random_search_each_trying_the_study_values_first() -> None:
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    from orchestrator.tuning_ray import search_algorithm

    tuning = parse_study(tuned_study()).tune
    point = [{"training.learning_rate": 0.001, "training.batch_size": "4"}]
    assert isinstance(search_algorithm(tuning, point), OptunaSearch)  # auto, with optuna installed (the dev extra)
    random = search_algorithm(tuning.model_copy(update={"search": "random"}), point)
    assert isinstance(random, BasicVariantGenerator) and random._points_to_evaluate == point


@pytest.mark.slow
def test_the_committed_tuned_report_rebuilds_with_the_values_its_readme_quotes(tmp_path) -> None:
    import shutil
    import warnings

    from analysis.report import build_report

    committed = ROOT / "docs" / "tuned_lr_cpu"
    shutil.copytree(committed, tmp_path / "t", ignore=shutil.ignore_patterns("figures", "tables", "*.md"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = build_report(tmp_path / "t").report.read_text()
    assert text == (committed / "report.md").read_text()
    assert "| synthetic | noskip_unet | 4 | 0.00305 | 0.807 | 0.760 | 0.046 |" in text
    tuned = load_study(ROOT / "conf" / "tuned_lr_cpu_tuned.yaml").tuned
    assert tuned["unet"]["synthetic"].values == {"training.learning_rate": 0.00073, "training.batch_size": 4}
