"""What the MLflow UI needs to be where variants are compared, checked through MLflow's client API.

The experiment is a model-training one (MLflow's UI opens an experiment without the kind as a GenAI
one: traces, "Evaluations"), described by the driver; the grid factors are params, which the chart
and compare views offer (tags they do not), with train_alpha a plain number; README's filters match.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient
from test_trial import run, tiny_study
from trial_studies import small_study

from orchestrator.driver import experiment_note
from orchestrator.run import main
from trainables.config import parse_study
from trainables.schema import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, NOTE_TAG, STUDY_TAG
from trainables.spec import TrialSpec
from trainables.tracking import ForeignExperimentError, ensure_experiment


def test_a_new_experiment_is_model_training_and_described(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = ensure_experiment(uri, "quick", ui_tags={NOTE_TAG: "**about**"})
    tags = MlflowClient(uri).get_experiment(experiment_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND == "custom_model_development"
    assert tags[STUDY_TAG] == "quick" and tags[NOTE_TAG] == "**about**"
    assert ensure_experiment(uri, "quick") == experiment_id  # a trial's call keeps the driver's note
    assert MlflowClient(uri).get_experiment(experiment_id).tags[NOTE_TAG] == "**about**"


def test_an_older_skipsweep_experiment_gets_the_tags_and_keeps_its_runs(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    old = client.create_experiment("quick", tags={STUDY_TAG: "quick"})  # as skipsweep made it before
    run_id = client.create_run(old, tags={"skipsweep.kind": "trial"}).info.run_id
    assert ensure_experiment(uri, "quick", ui_tags={NOTE_TAG: "n"}) == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert [r.info.run_id for r in client.search_runs([old])] == [run_id]


def test_an_experiment_of_another_tool_is_refused_and_an_empty_one_adopted(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    foreign = client.create_experiment("theirs")
    client.create_run(foreign, tags={"owner": "someone else"})
    with pytest.raises(ForeignExperimentError, match="holds runs that skipsweep did not make"):
        ensure_experiment(uri, "theirs")
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(foreign).tags  # left as it was
    empty = client.create_experiment("empty")
    assert ensure_experiment(uri, "empty") == empty
    assert client.get_experiment(empty).tags[STUDY_TAG] == "empty"


def test_the_command_refuses_another_tools_experiment_in_one_line(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_run(client.create_experiment("theirs"))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(small_study("theirs", tracking={"uri": uri})))
    capsys.readouterr()  # MLflow's own line on creating the store above
    assert main(["--config", str(study)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("error: tracking URI") and "'theirs'" in error


def test_the_note_says_what_the_study_is_and_how_to_report_it(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(small_study("noted", description="Skips vs none")))
    study = parse_study(yaml.safe_load(path.read_text()))
    note = experiment_note(study, str(path), "sqlite:///x.db")
    assert note.startswith("**Skips vs none**") and f"config hash {study.config_hash()}" in note
    assert "python -m analysis export --study noted --tracking-uri sqlite:///x.db --out results/noted" in note
    assert "python -m analysis report results/noted --log-to-mlflow --tracking-uri sqlite:///x.db" in note


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory) -> dict:
    """One-epoch trials (unet a0.40, noskip_unet a0.40, unet a1.00) of one small study; their results by name."""
    root = tmp_path_factory.mktemp("three")
    store = {"uri": f"sqlite:///{root}/mlflow.db", "cache": root / "cache", "root": root}
    study = tiny_study("filters", epochs=1)
    results = {}
    for variant, alpha in (("unet", 0.4), ("noskip_unet", 0.4), ("unet", 1.0)):
        result = run(study, store, variant=variant, alpha=alpha, work=f"{variant}{alpha}")
        results[result.spec.run_name] = result
    return {"store": store, "study": study, "results": results}


def test_grid_factors_are_params_and_the_readme_filters_match(three_runs: dict) -> None:
    assert TrialSpec("s", "synthetic", "unet", 0.1, 2).params() == {
        "variant": "unet",
        "dataset": "synthetic",
        "train_alpha": "0.1",
        "seed": "2",
    }
    assert "train_alpha" not in TrialSpec("s", "glas", "unet", None, 0).params()
    client = MlflowClient(three_runs["store"]["uri"])
    experiment = client.get_experiment_by_name("filters").experiment_id

    def names(query: str) -> list[str]:
        return sorted(r.info.run_name for r in client.search_runs([experiment], filter_string=query))

    for query, expected in README_FILTERS:
        assert names(query) == expected, query
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for query, _ in README_FILTERS:
        assert query in readme, f"README lost the filter {query!r}"


README_FILTERS = [
    ("params.variant = 'unet' and params.train_alpha = '0.4'", ["unet a0.40 s0 synthetic"]),
    ("tags.train_alpha = '0.40'", ["noskip_unet a0.40 s0 synthetic", "unet a0.40 s0 synthetic"]),
    ("params.seed = '0' and params.variant != 'unet'", ["noskip_unet a0.40 s0 synthetic"]),
]


def test_auto_sampling_aims_at_twenty_samples_a_trial_within_one_and_sixty_seconds() -> None:
    from trainables.tracking.system_metrics import auto_interval

    assert [auto_interval(s) for s in (5, 15, 400, 7200)] == [1.0, 1.0, 20.0, 60.0]


def test_a_trial_samples_its_own_process_several_times_paced_to_its_length(tmp_path: Path) -> None:
    store = {"uri": f"sqlite:///{tmp_path}/mlflow.db", "cache": tmp_path / "cache", "root": tmp_path}
    study = tiny_study("sampled", epochs=240)  # ~6 s: MLflow's fixed 15 s would give it one sample
    assert study.tracking.system_metrics_seconds == "auto"
    started = time.monotonic()
    result = run(study, store, work="sampled")
    seconds = time.monotonic() - started
    client = MlflowClient(store["uri"])
    history = client.get_metric_history(result.run_id, "system/process_cpu_percent")
    cpu = [m.value for m in history]
    rss = [m.value for m in client.get_metric_history(result.run_id, "system/process_rss_megabytes")]
    # ~1 s apart at this length, so 2 or more however fast the machine trains (a fast one gave 2 in 6 s of run)
    assert len(rss) >= len(cpu) >= 2, (len(cpu), seconds)
    stamps = sorted(m.timestamp for m in history)
    assert max(b - a for a, b in zip(stamps, stamps[1:], strict=False)) < 5000, (stamps, seconds)  # not 15 s
    assert max(cpu) > 30  # training keeps (at least part of) a core busy
    assert max(cpu) <= 100 * psutil.cpu_count() * 1.1  # no reading over a window of a few 10 ms ticks (1000%)
    assert min(rss) > 100  # torch alone holds more than 100 MB
    machine = client.get_metric_history(result.run_id, "system/cpu_utilization_percentage")
    assert len(machine) == len(rss)  # MLflow's own, in the same samples


def test_each_trial_logs_a_small_picture_of_its_predictions(three_runs: dict, tmp_path: Path) -> None:
    from PIL import Image

    from trainables.datasets.registry import trial_data
    from trainables.predictions import MAX_BYTES, example_positions, shown_conditions

    store, result = three_runs["store"], three_runs["results"]["unet a0.40 s0 synthetic"]
    client = MlflowClient(store["uri"])
    local = Path(client.download_artifacts(result.run_id, "predictions.png", str(tmp_path / "dl")))
    assert local.stat().st_size <= MAX_BYTES
    with Image.open(local) as picture:
        width, height = picture.size
    # rows: alpha 0.40 (in-domain and the lowest), alpha 1.00, then the level harder (in_domain repeats 0.40)
    assert height > width and height > 300
    conditions = trial_data(three_runs["study"], "synthetic", 0.4, store["cache"]).conditions
    assert [c.name for c in shown_conditions(conditions, 0.4)] == ["alpha_0.40", "alpha_1.00", "harder"]
    assert example_positions(4, 3).tolist() == [0, 2, 3] and example_positions(2, 3).tolist() == [0, 1]
    quiet = tiny_study("unpictured", epochs=1, tracking={"prediction_examples": 0})
    silent = run(quiet, store, work="unpictured")
    assert "predictions.png" not in {a.path for a in client.list_artifacts(silent.run_id)}


@pytest.mark.parametrize("study", ["quick", "miccai2023_cpu", "miccai2023", "glas_cpu"])
def test_run_names_differ_within_what_the_runs_table_shows(study: str) -> None:
    from orchestrator.expand import expand
    from trainables.config import load_study

    path = Path(__file__).parents[1] / "conf" / f"{study}.yaml"
    names = [spec.run_name for spec in expand(load_study(path, keep_unset=True))]
    assert len({name[:24] for name in names}) == len(names)  # MLflow cut "noskip_unet/synthetic/a0..." here


def test_each_run_has_its_in_domain_and_out_of_domain_dice_as_two_summary_metrics(three_runs: dict) -> None:
    result = three_runs["results"]["unet a0.40 s0 synthetic"]
    metrics = MlflowClient(three_runs["store"]["uri"]).get_run(result.run_id).data.metrics
    assert metrics["dice_in_domain"] == pytest.approx(metrics["test_dice.alpha_0.40"])
    assert metrics["test_dice.in_domain"] == pytest.approx(metrics["test_dice.alpha_0.40"])  # the same images
    others = [metrics[f"test_dice.{c}"] for c in ("alpha_1.00", "harder")]
    assert metrics["dice_out_of_domain_mean"] == pytest.approx(sum(others) / 2)


def test_runs_are_drawn_in_their_variants_colour_the_same_as_in_the_report(three_runs: dict) -> None:
    from analysis.report.figures import variant_style
    from trainables.schema import RUN_COLOUR_TAG

    client = MlflowClient(three_runs["store"]["uri"])
    colours = {
        result.spec.variant: client.get_run(result.run_id).data.tags[RUN_COLOUR_TAG]
        for result in three_runs["results"].values()
    }
    assert colours == {"noskip_unet": "#1b1b1b", "unet": "#0072b2"}
    assert all(variant_style(v)["color"] == colour for v, colour in colours.items())


def test_the_study_view_draws_dice_against_train_alpha_then_the_curves_then_the_resources(tmp_path: Path) -> None:
    import json

    from orchestrator.driver import experiment_tags, runs_page
    from trainables.config import load_study
    from trainables.tracking.view import VIEW_TAG

    conf = Path(__file__).parents[1] / "conf"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    quick = load_study(conf / "quick.yaml", keep_unset=True)
    tags = experiment_tags(quick, str(conf / "quick.yaml"), uri)
    experiment_id = ensure_experiment(uri, quick.experiment_name, tags)
    stored = MlflowClient(uri).get_experiment(experiment_id).tags
    assert stored[NOTE_TAG] == tags[NOTE_TAG] and stored[VIEW_TAG] == tags[VIEW_TAG]
    view = json.loads(stored[VIEW_TAG])
    sections = {s["uuid"]: s["name"] for s in view["compareRunSections"]}
    assert sorted(sections.values()) == ["Dice against train_alpha", "Training curves", "Trial resources"]
    charts = [
        (sections[c["metricSectionId"]], c["type"], c.get("metricKey") or c["yaxis"]["key"])
        for c in view["compareRunCharts"]
    ]
    assert charts[:4] == [
        ("Dice against train_alpha", "SCATTER", "dice_in_domain"),
        ("Dice against train_alpha", "SCATTER", "dice_out_of_domain_mean"),
        ("Dice against train_alpha", "SCATTER", "test_dice.harder"),
        ("Dice against train_alpha", "SCATTER", "test_dice.easier"),
    ]
    assert {c["xaxis"]["key"] for c in view["compareRunCharts"] if c["type"] == "SCATTER"} == {"train_alpha"}
    assert ("Training curves", "LINE", "val_dice") in charts and (
        "Trial resources",
        "LINE",
        "system/process_cpu_percent",
    ) in charts
    assert view["searchFilter"] == "tags.`skipsweep.kind` = 'trial'" and view["runsHiddenMode"] == "SHOW_ALL"
    assert view["selectedColumns"][:3] == ["params.`variant`", "params.`train_alpha`", "params.`seed`"]
    assert runs_page(experiment_id) == (
        f"#/experiments/{experiment_id}/runs?viewStateShareKey=skipsweep&workflowType=machine_learning&compareRunsMode=CHART"
    )  # MLflow ignores a saved view when the address holds a search setting too (searchFilter, orderByKey, ...)

    glas = load_study(conf / "glas_cpu.yaml", keep_unset=True)  # medical only: Dice against the variant
    view = json.loads(experiment_tags(glas, str(conf / "glas_cpu.yaml"), uri)[VIEW_TAG])
    assert {c["xaxis"]["key"] for c in view["compareRunCharts"] if c["type"] == "SCATTER"} == {"variant"}
    assert "test_dice.in_domain" not in json.dumps(view)  # that is dice_in_domain
    assert "params.`train_alpha`" not in view["selectedColumns"]


def test_the_driver_points_at_the_study_view(three_runs: dict, capsys) -> None:
    from orchestrator.driver import _print_summary
    from trainables.tracking import RetryPolicy

    _print_summary(three_runs["store"]["uri"], "filters", RetryPolicy(attempts=1))
    opened = next(line for line in capsys.readouterr().out.splitlines() if "then open" in line)
    assert opened.split()[-1].startswith("http://127.0.0.1:5000/#/experiments/")
    assert opened.endswith("/runs?viewStateShareKey=skipsweep&workflowType=machine_learning&compareRunsMode=CHART")


@pytest.mark.slow
def test_the_real_ui_opens_the_study_view_in_headless_chromium(three_runs: dict, tmp_path: Path) -> None:
    """MLflow's own UI, served and rendered: the view's first section is on the page, with no share-key error."""
    import shutil

    pytest.importorskip("playwright", reason="the ui extra (pip install -e '.[ui]')")
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium)")
    import importlib.util

    from orchestrator.driver import experiment_tags

    uri, study = three_runs["store"]["uri"], three_runs["study"]
    path = tmp_path / "study.yaml"
    path.write_text("study: filters\n")  # only hashed into the description
    ensure_experiment(uri, "filters", experiment_tags(study, str(path), uri))
    script = Path(__file__).parents[1] / "docs" / "mlflow_ui" / "screenshots.py"
    spec = importlib.util.spec_from_file_location("screenshots", script)
    screenshots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screenshots)
    out = tmp_path / "shots"
    assert screenshots.main(["--tracking-uri", uri, "--experiment", "filters", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [
        "1_runs.png", "2_study_view.png", "3_run_metrics.png", "4_run_system_metrics.png", "5_run_predictions.png",
    ]  # fmt: skip


def test_the_process_cpu_share_is_never_read_over_a_window_too_short_for_psutils_ticks() -> None:
    from trainables.tracking.system_metrics import ProcessMonitor

    monitor = ProcessMonitor()
    for _ in range(40):  # readings 3 ms apart, a core busy in between: 10 ms ticks would read 0% or 333%
        until = time.perf_counter() + 0.003
        while time.perf_counter() < until:
            pass
        monitor.collect_metrics()
    readings = monitor.metrics.get("process_cpu_percent", [])
    assert len(monitor.metrics["process_rss_megabytes"]) == 40
    assert len(readings) <= 1 and all(value <= 100 * psutil.cpu_count() * 1.1 for value in readings)
