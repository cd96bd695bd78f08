"""The MLflow names both sides share (trainables.schema): alphas, trial keys, URIs and the paged run search."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

import analysis.export
import analysis.frames
import trainables.config
from analysis.report.formatting import write_matrix_csv
from trainables.schema import (
    KIND_TAG,
    TRIAL_KIND,
    alpha_condition,
    condition_metric,
    format_alpha,
    kind_filter,
    resolve_tracking_uri,
    search_all_runs,
)
from trainables.spec import TrialSpec

ALPHAS = {
    0.05: "0.05",
    0.1: "0.10",
    0.125: "0.125",  # the analysis once printed "0.12" here, a label no run name had
    0.3: "0.30",
    0.1 + 0.2: "0.30",  # 0.30000000000000004: the level a study file meant
    0.5: "0.50",
    0.7: "0.70",
    0.9: "0.90",
    1.0: "1.00",
}


@pytest.mark.parametrize(("alpha", "text"), ALPHAS.items())
def test_an_alpha_prints_the_same_in_run_names_and_in_the_analysis(alpha: float, text: str) -> None:
    assert format_alpha(alpha) == trainables.config.format_alpha(alpha) == analysis.frames.format_alpha(alpha) == text
    assert TrialSpec("s", "synthetic", "unet", alpha, 0).run_name == f"unet a{text} s0 synthetic"
    assert alpha_condition(alpha) == f"alpha_{text}"


def test_a_matrix_label_names_the_alpha_of_its_runs(tmp_path: Path) -> None:
    matrix = pd.DataFrame([[0.5, 0.4], [0.3, 0.6]], index=[0.125, 0.3], columns=[0.125, 0.3])
    write_matrix_csv(matrix, tmp_path / "matrix.csv")
    header, first, _ = (tmp_path / "matrix.csv").read_text().splitlines()
    assert header.split(",")[1:] == ["0.125", "0.30"] and first.startswith("0.125,")


def test_trial_keys_of_stored_studies_still_resolve() -> None:
    """Ids and tags as the first release wrote them: a change here orphans every stored run."""
    synthetic = TrialSpec("miccai2023", "synthetic", "unet", 0.3, 1)
    assert synthetic.trial_id == "f789658ecdaf" and synthetic.tags()["train_alpha"] == "0.30"
    assert TrialSpec("miccai2023", "synthetic", "unet", 0.125, 1).trial_id == "fe3b00fd7b6a"
    medical = TrialSpec("miccai2023", "busi", "unet", None, 1)
    assert medical.trial_id == "b91c54d3fdc2" and medical.run_name == "unet s1 busi"
    key = {"study": "miccai2023", "dataset": "busi", "variant": "unet", "train_alpha": "", "seed": "1"}
    assert medical.tags() == key


def test_metric_and_filter_names() -> None:
    assert condition_metric("dice", "alpha_0.30") == "test_dice.alpha_0.30"
    assert kind_filter(TRIAL_KIND) == "tags.`skipsweep.kind` = 'trial'"


def test_the_tracking_uri_is_absolute_and_the_same_for_trials_and_analysis(tmp_path: Path, monkeypatch) -> None:
    assert analysis.export.resolve_tracking_uri is resolve_tracking_uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:///runs/m.db", base="/data") == "sqlite:////data/runs/m.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_tracking_uri() == "http://mlflow:5000"
    assert resolve_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"  # the study file's wins


def test_search_all_runs_reads_every_page(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("paged")
    trials = {client.create_run(experiment, tags={KIND_TAG: TRIAL_KIND}).info.run_id for _ in range(5)}
    client.create_run(experiment, tags={KIND_TAG: "report"})
    assert len(search_all_runs(client, experiment, page_size=2)) == 6
    found = search_all_runs(client, experiment, kind_filter(TRIAL_KIND), page_size=2)
    assert {run.info.run_id for run in found} == trials and len(found) == 5
