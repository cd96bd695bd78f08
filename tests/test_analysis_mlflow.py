"""Export from a real SQLite MLflow store, report offline, and log the report back to MLflow.

The store is built by hand (tests/analysis_fixtures.py): no training, every value computable by hand.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings

import pandas as pd
import pytest
from analysis_fixtures import STUDY, build_toy_store
from mlflow import MlflowClient
from numpy.testing import assert_allclose

from analysis.__main__ import main
from analysis.export import ExportError, export_study
from analysis.frames import EPOCHS_FILE, PER_IMAGE_FILE, RUNS_FILE, ExcludedRunsWarning, image_scores, load_export
from analysis.report.to_mlflow import log_report
from analysis.tables.relative import dice_matrix, relative_improvement, relative_matrix, seed_level_scores

TABLES = (RUNS_FILE, EPOCHS_FILE, PER_IMAGE_FILE)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return build_toy_store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / STUDY
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_study(STUDY, out, tracking_uri=store)
    return out, result, [str(w.message) for w in caught if issubclass(w.category, ExcludedRunsWarning)]


@pytest.fixture(scope="module")
def offline_report(tmp_path_factory):
    """Export a fresh store, delete the store, then build the report from the Parquet files alone."""
    root = tmp_path_factory.mktemp("offline")
    uri = build_toy_store(root / "store")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_study(STUDY, root / "results", tracking_uri=uri)
    shutil.rmtree(root / "store")
    assert main(["report", str(root / "results"), "--resamples", "500"]) == 0
    return root / "results"


def test_runs_table_is_typed_and_holds_finished_trials_only(exported):
    out, result, _ = exported
    runs = pd.read_parquet(out / RUNS_FILE)
    assert result.n_runs == len(runs) == 11  # 4 + 3 synthetic, 4 busi
    assert list(runs.columns[:13]) == [
        "run_id",
        "run_name",
        "trial_id",
        "study",
        "dataset",
        "variant",
        "train_alpha",
        "seed",
        "status",
        "config_hash",
        "split_hash",
        "git_commit",
        "params_changed",
    ]
    assert set(runs["status"]) == {"FINISHED"} and set(runs["params_changed"]) == {""}
    assert runs["train_alpha"].dtype == "float64" and runs["seed"].dtype == "int64"
    assert runs.loc[runs["dataset"] == "busi", "train_alpha"].isna().all()
    assert sorted(runs.loc[runs["dataset"] == "synthetic", "train_alpha"].unique()) == [0.3, 0.7]
    assert runs["param.learning_rate"].dtype == "float64" and runs["param.batch_size"].dtype == "int64"
    assert set(runs["param.channels"]) == {"(16, 32)"}
    assert runs["best_epoch"].dtype == "int64" and set(runs["best_val_dice"]) == {0.7}
    unet = runs.set_index("run_name").loc["unet a0.30 s0 synthetic"]
    assert_allclose(unet["test_dice.alpha_0.70"], 0.405)  # mean of 0.345 and 0.465
    assert "train_loss" not in runs and "attention_unet" not in set(runs["variant"])


def test_epochs_and_per_image_tables(exported):
    out, _, _ = exported
    runs = pd.read_parquet(out / RUNS_FILE).set_index("run_name")
    epochs = pd.read_parquet(out / EPOCHS_FILE)
    assert list(epochs.columns) == ["run_id", "epoch", "train_loss", "val_dice", "epoch_seconds"]
    one = epochs[epochs["run_id"] == runs.loc["unet s1 busi", "run_id"]]
    assert list(one["epoch"]) == [0, 1, 2, 3] and list(one["train_loss"]) == [1.0, 0.8, 0.6, 0.5]
    assert one["val_dice"].isna().tolist() == [True, False, True, False]
    assert list(one["val_dice"].dropna()) == [0.4, 0.7]
    images = pd.read_parquet(out / PER_IMAGE_FILE)
    assert list(images.columns) == ["run_id", "condition", "test_alpha", "image_id", "dice", "ts", "hd95"]
    assert images["test_alpha"].dtype == "float64" and len(images) == 7 * 4 + 4 * 6
    assert set(images["run_id"]) == set(runs["run_id"])


def test_no_absolute_paths_in_the_tables(exported):
    out, _, _ = exported
    for name in TABLES:
        frame = pd.read_parquet(out / name)
        text = frame.select_dtypes(exclude="number").astype(str)
        assert not text.apply(lambda column: column.str.contains("/tmp|file:", regex=True)).any(axis=None), name


def test_unfinished_runs_are_left_out_and_named(exported):
    out, result, messages = exported
    assert {(e["run_name"], e["status"]) for e in result.excluded} == {
        ("unet a0.70 s1 synthetic", "FAILED"),
        ("attention_unet a0.30 s0 synthetic", "RUNNING"),
    }
    assert len(messages) == 1
    assert "unet a0.70 s1 synthetic (FAILED: CUDA out of memory)" in messages[0]
    assert "attention_unet a0.30 s0 synthetic (RUNNING)" in messages[0]
    assert json.loads((out / "export.json").read_text())["excluded"] == result.excluded


def test_matrix_cell_and_relative_improvement_by_hand(exported):
    study = load_export(exported[0])
    with pytest.warns(UserWarning, match=r"\(unet, alpha 0\.70, seed 1\)"):  # the FAILED run
        scores = seed_level_scores(image_scores(study.runs, study.per_image))
    # trained 0.3, tested 0.7: noskip means 0.45 / 0.55 (seed 0 / 1), unet 0.405 / 0.505.
    relative = relative_matrix(scores, "synthetic", "unet")
    assert_allclose(relative.loc[0.3, 0.7], (-0.045 / 0.45 - 0.045 / 0.55) / 2)
    assert_allclose(dice_matrix(scores, "synthetic", "unet").loc[0.3, 0.7], 0.455)
    assert relative.loc[[0.7]].isna().all(axis=None)  # seed 1 of unet at 0.7 failed: explicit NaN
    improvement = relative_improvement(scores).set_index("train_alpha")
    assert_allclose(improvement.loc[0.3, "mean"], (0.09 / 0.45 + 0.09 / 0.55) / 2)
    assert_allclose(improvement.loc[0.3, "std"], abs(0.09 / 0.45 - 0.09 / 0.55) / math.sqrt(2))
    assert math.isnan(improvement.loc[0.7, "mean"])


@pytest.mark.parametrize(("study", "words"), [("mixed_config", "config hashes"), ("mixed_split", "split hashes")])
def test_mixed_hashes_are_refused_naming_the_runs(store, tmp_path, study, words):
    with pytest.raises(ExportError, match=words) as error:
        export_study(study, tmp_path / "out", tracking_uri=store)
    assert "unet s0 busi" in str(error.value) and "unet s1 busi" in str(error.value)
    assert not (tmp_path / "out" / RUNS_FILE).exists()


def test_cli_errors_exit_2_with_one_line(store, exported, tmp_path, capsys):
    assert main(["export", "--study", "no_such_study", "--tracking-uri", store, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no MLflow experiment for study 'no_such_study'") and "toy_study" in err
    assert main(["export", "--study", STUDY, "--tracking-uri", f"sqlite:///{tmp_path}/absent.db", "--out", "x"]) == 2
    assert "no MLflow store" in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()
    assert main(["report", str(tmp_path)]) == 2
    assert "run `python -m analysis export" in capsys.readouterr().err
    assert main(["report", str(exported[0]), "--baseline", "vnet"]) == 2
    assert capsys.readouterr().err.strip() == "error: baseline 'vnet' is not among the variants ['noskip_unet', 'unet']"


def test_tracking_uri_from_environment(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", "--study", STUDY, "--out", str(tmp_path / "env")]) == 0
    assert len(pd.read_parquet(tmp_path / "env" / RUNS_FILE)) == 11


def test_offline_report_embeds_figures_and_tables(offline_report):
    report = (offline_report / "report.md").read_text()
    figures = sorted((offline_report / "figures").glob("*.png"))
    assert {path.stem for path in figures} >= {
        "relative_improvement",
        "relative_matrix_synthetic_unet",
        "dice_matrix_synthetic_unet",
        "learning_curves",
        "dice_vs_texture_similarity",
    }
    for png in figures:
        assert png.stat().st_size > 1000 and png.with_suffix(".pdf").stat().st_size > 1000
        assert f"](figures/{png.name})" in report
    assert "(unet, alpha 0.70, seed 1)" in report and "unet a0.70 s1 synthetic (FAILED)" in report
    assert "|  | in_domain | 0.750 (0.129) | **0.875 (0.065)** |" in report
    assert (
        r" & in\_domain & 0.750 (0.129) & \textbf{0.875 (0.065)} \\"
        in (offline_report / "tables" / "ood_dice.tex").read_text()
    )
    matrix = pd.read_csv(offline_report / "tables" / "relative_matrix_synthetic_unet.csv", index_col=0)
    assert matrix.index.name == "trained on alpha (rows) / tested on alpha (columns)"
    assert_allclose(matrix.loc[0.3, "0.70"], (-0.045 / 0.45 - 0.045 / 0.55) / 2, rtol=1e-5)
    assert math.isnan(matrix.loc[0.7, "0.30"])
    assert (offline_report / "tables" / "ood_hd95.md").exists()
    ranking = pd.read_csv(offline_report / "tables" / "robustness_ranking_groups.csv", index_col=0)
    assert list(ranking.sort_values("rank").index) == ["No-Skip", "Standard"]


def test_log_to_mlflow_keeps_one_report_run_and_reexport_ignores_it(store, exported, tmp_path, capsys):
    out = exported[0]
    assert main(["report", str(out), "--resamples", "200", "--log-to-mlflow", "--tracking-uri", store]) == 0
    assert "logged the report to MLflow run" in capsys.readouterr().out
    again = log_report(out, STUDY, tracking_uri=store)
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name(STUDY).experiment_id
    reports = client.search_runs([experiment], filter_string="tags.`skipsweep.kind` = 'report'")
    assert [run.info.run_id for run in reports] == [again]
    assert reports[0].info.status == "FINISHED"
    artifacts = {info.path for info in client.list_artifacts(again)}
    assert {"report.md", "figures", "tables"} <= artifacts
    assert "figures/relative_improvement.pdf" in {info.path for info in client.list_artifacts(again, "figures")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = export_study(STUDY, tmp_path / "again", tracking_uri=store)
    assert second.n_runs == 11
    for name in TABLES:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name


def test_exported_files_are_readable_by_colleagues(store, tmp_path):
    """A shared cluster's results folder: the files get the mode a plain open() gives, not mkstemp's 0600."""
    previous = os.umask(0o022)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = export_study(STUDY, tmp_path / "shared", tracking_uri=store)
    finally:
        os.umask(previous)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in result.out_dir.iterdir()}
    assert modes == dict.fromkeys([RUNS_FILE, EPOCHS_FILE, PER_IMAGE_FILE, "export.json"], "0o644")
