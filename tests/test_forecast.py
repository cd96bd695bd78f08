"""The forecast's arithmetic against hand-worked cases, its flags, and the report's forecast-vs-actual section."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from trial_studies import small_study

from analysis.report.forecast import forecast_section, forecast_table
from orchestrator.forecast import (
    Node,
    TrialCost,
    binding,
    forecast,
    makespan,
    node_slots,
    parse_cluster,
    slots,
    validations,
)
from orchestrator.run import main
from trainables.config import StudyConfigError


@pytest.mark.parametrize(
    ("node", "cpu", "gpu", "expected"),
    [
        (Node(32, 8), 2, 0.25, 16),  # CPUs bind: 16 by CPU, 32 by GPU
        (Node(32, 8), 1, 0.25, 32),  # GPUs and CPUs tie at 32
        (Node(64, 2), 1, 0.4, 4),  # a share never spans GPUs: 2 per GPU, not floor(2 / 0.4) = 5
        (Node(16, 1), 1, 0.3, 3),  # 0.3 does not divide 1: three fit, 0.1 of the GPU idles
        (Node(4, 4), 1, 1.0, 4),  # whole GPUs
        (Node(8, 3), 1, 2.0, 1),  # two GPUs a trial, three on the node: one trial
        (Node(2, 0), 0.5, 0.0, 4),  # CPU-only trials on a CPU node
        (Node(64, 0), 1, 0.25, 0),  # a GPU share on a node without GPU: none fits there
        (Node(1, 0), 0.3, 0.0, 3),  # fixed point as Ray counts: 0.3 x 3 = 0.9 fits, 0.3 x 4 does not
        (Node(0.9, 0), 0.3, 0.0, 3),  # 0.3 + 0.3 + 0.3 fits 0.9 exactly (floating point would say 2)
        (Node(4, 1.5), 1, 0.5, 3),  # a declared half GPU holds one more half-GPU trial
    ],
)
def test_node_slots_pack_as_ray_does(node: Node, cpu: float, gpu: float, expected: int) -> None:
    assert node_slots(node, cpu, gpu) == expected


def test_a_heterogeneous_cluster_sums_its_nodes_and_says_what_binds() -> None:
    cluster = [Node(64), Node(4, 8), Node(32, 2)]  # a CPU node, a GPU node short of CPUs, a GPU node short of GPUs
    assert slots(cluster, 1, 0.25) == 0 + 4 + 8
    assert binding(cluster, 1, 0.25) == "CPUs and GPUs"  # the second node by CPUs, the third by GPUs
    assert binding([Node(4, 8)], 1, 0.25) == "CPUs"
    assert binding([Node(32, 2)], 1, 0.25) == "GPUs"
    assert slots(cluster, 1, 0.0) == 64 + 4 + 32  # trials asking no GPU go anywhere
    assert slots(cluster, 1, 0.25, cap=5) == 5
    assert binding(cluster, 1, 0.25, cap=5) == "max_concurrent_trials"
    assert binding(cluster, 1, 0.25, cap=50) == "CPUs and GPUs"  # a cap above the packing changes nothing


def test_makespan_schedules_in_order_on_the_slot_that_frees_first() -> None:
    assert makespan([10, 10, 10], 2) == 20  # two at once, then the third
    assert makespan([10, 10, 10], 2, startup=3) == 23  # each slot's worker starts first
    assert makespan([30, 10, 10, 10], 2) == 30  # the short ones pass the long one on the other slot
    assert makespan([10, 10, 10, 30], 2) == 40  # the long one last starts at 10 s: order matters
    assert makespan([5, 7], 8) == 7  # more slots than trials
    assert makespan([], 4) == 0
    with pytest.raises(ValueError, match="no trial fits"):
        makespan([1.0], 0)


def test_a_trial_costs_its_setup_epochs_validations_and_test() -> None:
    assert validations(40, 2) == 20
    assert validations(5, 2) == 3  # epochs 2 and 4, and the last
    assert validations(3, 5) == 1  # only the last
    cost = TrialCost(epoch=0.5, validation=0.1, test=2.0, setup=1.0, startup=4.0)
    assert cost.trial_seconds(40, 2) == pytest.approx(1.0 + 40 * 0.5 + 20 * 0.1 + 2.0)  # 25, not the worker's start


def test_a_forecast_adds_up_trials_hours_and_wall_time() -> None:
    cheap, dear = TrialCost(1.0, 0.0, 0.0), TrialCost(3.0, 0.0, 0.0, startup=2.0)
    trials = [("noskip_unet", cheap, 10, 1)] * 4 + [("unet", dear, 10, 1)] * 2  # 10 s and 30 s trials
    result = forecast("s", "h", trials, [Node(2, 1)], cpu=1, gpu=0.5, measured_at=2, measured_on="here")
    assert result.parallel == 2 and result.binding == "CPUs and GPUs"
    assert result.per_variant["noskip_unet"]["seconds_per_trial"] == pytest.approx(10)
    assert result.per_variant["unet"]["trials"] == 2
    assert result.trial_hours == pytest.approx((4 * 10 + 2 * 30) / 3600)
    assert result.gpu_hours == pytest.approx(result.trial_hours * 0.5)
    assert result.cpu_hours == pytest.approx(result.trial_hours)
    assert result.trials_seconds == pytest.approx(50)  # [10, 10], [10, 10], then 30 + 30 on one slot each: 20 + 30
    assert result.wall_seconds == pytest.approx(52)  # the workers start first (the largest start-up measured)
    assert "2 at once on here" in result.assumptions
    with pytest.raises(StudyConfigError, match="more than any node of 1 node \\(4 CPU\\) has"):
        forecast("s", "h", trials, [Node(4)], cpu=1, gpu=0.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8 GPUs, 32 CPUs", [Node(32, 8)]),
        ("4 x (8 GPUs, 32 CPUs); 2 x 64 CPUs", [Node(32, 8)] * 4 + [Node(64)] * 2),
        ("2x16 cpu + 1 gpu 4 cpus", [Node(16)] * 2 + [Node(4, 1)]),
    ],
)
def test_cluster_text_is_read_as_nodes(text: str, expected: list[Node]) -> None:
    assert parse_cluster(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8 GPUs", "'8 GPUs' has no CPUs"),
        ("lots of GPUs", "'lots of GPUs' is not '\\[N x\\] C CPUs\\[, G GPUs\\]'"),
        ("32 CPUs, 8 TPUs", "is not '\\[N x\\] C CPUs"),
        ("0 x 32 CPUs", "a group needs at least one node"),
        (" ; ", "no node given"),
    ],
)
def test_bad_cluster_text_is_one_line_naming_the_part(text: str, message: str) -> None:
    with pytest.raises(StudyConfigError, match=f"--cluster: .*{message}"):
        parse_cluster(text)


def _study(tmp_path: Path) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_study("s", variants=["noskip_unet", "unet"])))
    return str(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--calibrate"], "--calibrate goes with --dry-run"),
        (["--dry-run", "--calibrate", "--tune"], "--calibrate forecasts the study's grid"),
        (["--dry-run", "--cluster", "8 GPUs, 32 CPUs"], "--cluster needs --calibrate"),
        (["--dry-run", "--epoch-seconds", "unet=1", "--cluster", "8 GPUs"], "'8 GPUs' has no CPUs"),
    ],
)
def test_forecast_flags_out_of_place_are_refused_before_any_work(
    tmp_path: Path, capsys, monkeypatch, extra: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--config", _study(tmp_path), *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_dry_run_forecasts_another_cluster_from_epoch_seconds(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = _study(tmp_path)  # 2 variants x 1 level x 1 seed, 2 epochs, 1 CPU and 0.25 GPU a trial
    assert (
        main(["--config", study, "--dry-run", "--epoch-seconds", "noskip_unet=10,unet=20", "--cluster", "1 GPU, 1 CPU"])
        == 0
    )
    out = capsys.readouterr().out
    assert "forecast for study s on 1 node (1 CPU, 1 GPU):" in out
    # one at once (1 CPU binds before 4 GPU shares): a 20 s trial, then a 40 s one
    assert "1 trial(s) at once (each asks 1 CPU and 0.25 GPU; CPUs bind); wall time 1 min 0 s" in out
    assert not (tmp_path / "results").exists()  # a forecast from given seconds is printed, not saved


def _runs(seconds: dict[str, list[float]], gpu: float = 0.25) -> pd.DataFrame:
    start = pd.Timestamp("2026-12-05 10:00", tz="UTC")
    rows = []
    for variant, durations in seconds.items():
        for offset, duration in enumerate(durations):
            begin = start + pd.Timedelta(seconds=10 * offset)
            rows.append(
                {
                    "variant": variant,
                    "start_time": begin,
                    "end_time": begin + pd.Timedelta(seconds=duration),
                    "param.resources.gpu": gpu,
                    "param.resources.cpu": 1.0,
                    "config_hash": "abc",
                }
            )
    return pd.DataFrame(rows)


FORECAST = {
    "study": "s",
    "config_hash": "abc",
    "cluster": "1 node (4 CPU, 1 GPU)",
    "parallel": 4,
    "binding": "GPUs",
    "gpu": 0.25,
    "gpu_hours": 0.01,
    "cpu_hours": 0.04,
    "wall_seconds": 60.0,
    "trials_seconds": 50.0,
    "per_variant": {
        "noskip_unet": {"trials": 2, "seconds_per_trial": 20.0},
        "unet": {"trials": 2, "seconds_per_trial": 30.0},
    },
}


def test_forecast_vs_actual_per_variant_and_in_all() -> None:
    runs = _runs({"noskip_unet": [20.0, 30.0], "unet": [30.0, 45.0]})
    table = forecast_table(runs, FORECAST).set_index("variant")
    assert table.loc["noskip_unet", "actual_seconds"] == pytest.approx(25.0)
    assert table.loc["noskip_unet", "ratio"] == pytest.approx(1.25)
    assert table.loc["unet", "ratio"] == pytest.approx(37.5 / 30)
    assert (table.loc["unet", "actual_min"], table.loc["unet", "actual_max"]) == (30.0, 45.0)
    # the span: all start at 10:00 or 10:00:10, the last ends at 10:00:55
    assert table.loc["all (wall time)", "actual_seconds"] == pytest.approx(55.0)
    assert table.loc["all (wall time)", "ratio"] == pytest.approx(55.0 / 50.0)
    assert table.loc["all (wall time)", "trials_run"] == 4


def test_the_report_section_shows_the_ratios_device_hours_and_a_changed_study(tmp_path: Path) -> None:
    from analysis.report.writer import Writer

    runs = _runs({"noskip_unet": [20.0, 30.0], "unet": [30.0, 45.0]})
    text = forecast_section(Writer(tmp_path), runs, FORECAST)
    assert "| noskip_unet | 2 | 2 | 20.0 | 25.0 (20.0 to 30.0) | x1.25 |" in text
    assert "| all (wall time) | 4 | 4 | 50.0 | 55.0 | x1.10 |" in text
    gpu_hours = (20 + 30 + 30 + 45) * 0.25 / 3600
    assert f"GPU-hours (each run's time x the GPU share it recorded): forecast 0.010, actual {gpu_hours:.3f}" in text
    assert "the study changed" not in text
    assert (tmp_path / "tables" / "forecast_vs_actual.csv").is_file()
    changed = forecast_section(Writer(tmp_path), runs.assign(config_hash="def"), FORECAST)
    assert "made for config hash abc, the runs have def: the study changed" in changed
    assert forecast_section(Writer(tmp_path), runs, None) == ""  # not calibrated: no section
    partial = forecast_section(Writer(tmp_path), runs, {"per_variant": {}})  # a forecast missing its figures
    assert "| all (wall time) | 0 | 4 | - | 55.0 | - |" in partial and "workers' start: unknown." in partial


def test_a_calibration_leaves_out_the_trials_already_finished_in_mlflow(tmp_path: Path, capsys, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    from orchestrator.calibrate import finished_before
    from orchestrator.expand import expand
    from trainables.config import load_study
    from trainables.schema import KIND_TAG, TRIAL_ID_TAG, TRIAL_KIND

    monkeypatch.chdir(tmp_path)
    path = _study(tmp_path)
    study, uri = load_study(path), f"sqlite:///{tmp_path}/mlflow.db"
    specs = expand(study)
    assert finished_before(uri, study) == set() and not (tmp_path / "mlflow.db").exists()  # never made by a dry run
    client = MlflowClient(uri)
    experiment = client.create_experiment(study.experiment_name)
    for spec, status in zip(specs, ("FINISHED", "FAILED"), strict=True):
        run = client.create_run(experiment, tags={KIND_TAG: TRIAL_KIND, TRIAL_ID_TAG: spec.trial_id})
        client.set_terminated(run.info.run_id, status)
    assert finished_before(uri, study) == {specs[0].trial_id}  # the failed one runs again: it is forecast
    for spec in specs[1:]:
        client.set_terminated(
            client.create_run(experiment, tags={KIND_TAG: TRIAL_KIND, TRIAL_ID_TAG: spec.trial_id}).info.run_id
        )
    # every trial finished: nothing is measured (no Ray, no data prepared), nothing saved
    assert main(["--config", path, "--dry-run", "--calibrate", "--tracking-uri", uri]) == 0
    assert "[s] every trial has finished in MLflow: nothing to forecast" in capsys.readouterr().out
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_the_report_compares_only_the_runs_that_ended_after_the_forecast(tmp_path: Path) -> None:
    from analysis.report.writer import Writer

    runs = _runs({"noskip_unet": [20.0, 30.0], "unet": [30.0, 45.0]})
    # runs end at 10:00:20 and 10:00:40 (noskip_unet), 10:00:30 and 10:00:55 (unet); the forecast was made at 10:00:25
    forecast = {**FORECAST, "created": "2026-12-05T10:00:25+00:00", "finished_before": 1}
    text = forecast_section(Writer(tmp_path), runs, forecast)
    assert "| noskip_unet | 2 | 1 | 20.0 | 30.0 | x1.50 |" in text
    assert "| unet | 2 | 2 | 30.0 | 37.5 (30.0 to 45.0) | x1.25 |" in text
    assert "The 1 run(s) that had finished before the forecast are not compared" in text
    assert "| all (wall time) | 4 | 3 | 50.0 | 55.0 | x1.10 |" in text
    late = {**FORECAST, "created": "2026-12-05T11:00:00+00:00"}  # every run ended before it: nothing to compare
    assert forecast_section(Writer(tmp_path), runs, late) == ""
