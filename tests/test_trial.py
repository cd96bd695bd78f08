"""One trial end to end against a real SQLite MLflow store: contract, learning, determinism, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from trial_studies import merged, small_study

from trainables.config import parse_study
from trainables.datasets.registry import trial_data
from trainables.evaluate import evaluate_conditions
from trainables.loop import seed_everything
from trainables.models import build_model
from trainables.runtime import RuntimeOptions
from trainables.trial import TrialSpec, run_trial

TWO_LEVELS = {  # alpha 0.4 and 1.0 of brick foregrounds, 16 training images, a harder test condition
    "datasets": {"synthetic": {"levels": [0.4, 1.0], "foreground": "brick", "split": {"train": 16}}},
    "test_levels": {"harder": {"kind": "speckle", "variance": 0.1}, "in_domain": {"kind": "none"}},
    "training": {"val_every": 2},
}


def tiny_study(name: str = "tiny", epochs: int = 4, **changes):
    """The tests' small study with :data:`TWO_LEVELS`, ``epochs`` long, ``changes`` merged in."""
    return parse_study(merged(small_study(name, **TWO_LEVELS), {"training": {"epochs": epochs}}, changes))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("trial")
    return {"uri": f"sqlite:///{root}/mlflow.db", "cache": root / "cache", "root": root}


def run(study, store, variant="unet", alpha=1.0, seed=0, work="w", **kwargs):
    spec = TrialSpec(study.study, "synthetic", variant, alpha, seed)
    return run_trial(
        spec, study, work_dir=store["root"] / work, tracking_uri=store["uri"], cache_root=store["cache"], **kwargs
    )


def test_run_follows_the_mlflow_contract(store) -> None:
    study = tiny_study("contract", evaluation={"surface_metrics": True})
    result = run(study, store, alpha=0.4, work="contract")
    client = MlflowClient(store["uri"])
    mlflow_run = client.get_run(result.run_id)
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.info.run_name == "unet a0.40 s0 synthetic"
    tags = mlflow_run.data.tags
    assert {k: tags[k] for k in ("study", "dataset", "variant", "train_alpha", "seed")} == {
        "study": "contract",
        "dataset": "synthetic",
        "variant": "unet",
        "train_alpha": "0.40",
        "seed": "0",
    }
    assert tags["skipsweep.kind"] == "trial" and tags["skipsweep.status"] == "finished"
    assert tags["skipsweep.trial_id"] == result.spec.trial_id
    assert tags["config_hash"] == study.config_hash() and len(tags["split_hash"]) == 16 and tags["git_commit"]
    params = mlflow_run.data.params
    assert params["learning_rate"] == "0.001" and params["epochs"] == "4" and params["channels"] == "[4, 8, 16]"
    losses = client.get_metric_history(result.run_id, "train_loss")
    assert sorted(m.step for m in losses) == [0, 1, 2, 3]
    assert sorted(m.step for m in client.get_metric_history(result.run_id, "val_dice")) == [1, 3]
    metrics = mlflow_run.data.metrics
    for condition in ("alpha_0.40", "alpha_1.00", "harder", "in_domain"):
        for name in ("dice", "hd95", "asd", "nsd"):
            assert f"test_{name}.{condition}" in metrics
    assert metrics["best_val_dice"] == pytest.approx(result.best_val_dice)
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert artifacts == {"checkpoints", "per_image.parquet", "predictions.png", "split_manifest.json"}
    assert {a.path for a in client.list_artifacts(result.run_id, "checkpoints")} == {
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    }

    # The logged checkpoint loads with weights_only=True and reproduces the logged test Dice.
    local = Path(client.download_artifacts(result.run_id, "checkpoints/best.pt", str(store["root"] / "dl")))
    model = build_model("unet", study.model)
    model.load_state_dict(torch.load(local, weights_only=True))
    data = trial_data(study, "synthetic", 0.4, store["cache"])
    per_image = evaluate_conditions(model, data.conditions, study.evaluation, RuntimeOptions("cpu", eval_batch_size=4))
    for condition, rows in per_image.groupby("condition"):
        assert rows["dice"].mean() == pytest.approx(metrics[f"test_dice.{condition}"], abs=1e-6)
        assert rows["ts"].mean() == pytest.approx(metrics[f"test_ts.{condition}"], abs=1e-6)
    logged = pd.read_parquet(client.download_artifacts(result.run_id, "per_image.parquet", str(store["root"] / "dl")))
    assert list(logged.columns) == ["condition", "test_alpha", "image_id", "dice", "ts", "hd95", "asd", "nsd"]
    assert len(logged) == 4 * 4 and logged[["dice", "hd95", "asd", "nsd"]].notna().all().all()


def test_rerun_of_a_finished_trial_is_skipped(store) -> None:
    study = tiny_study("skip", epochs=2)
    first = run(study, store, work="skip")
    again = run(study, store, work="skip-again")
    assert again.skipped and again.run_id == first.run_id
    client = MlflowClient(store["uri"])
    experiment = client.get_experiment_by_name("skip")
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_training_learns_on_an_easy_set(store) -> None:
    study = tiny_study("learns", epochs=12, training={"learning_rate": 0.01})
    result = run(study, store, alpha=1.0, work="learns")
    seed_everything(0)
    untrained = build_model("unet", study.model)
    data = trial_data(study, "synthetic", 1.0, store["cache"])
    baseline = evaluate_conditions(
        untrained, data.conditions, study.evaluation, RuntimeOptions("cpu", eval_batch_size=4)
    )
    untrained_dice = baseline.loc[baseline.condition == "in_domain", "dice"].mean()
    assert result.test_metrics["test_dice.in_domain"] > untrained_dice + 0.25
    assert result.test_metrics["test_dice.in_domain"] > 0.55


def test_same_seed_gives_identical_losses_and_another_seed_does_not(store) -> None:
    study = tiny_study("determinism", epochs=2)
    first = run(study, store, work="d1")
    second = run(tiny_study("determinism-again", epochs=2), store, work="d2")
    other = run(study, store, seed=1, work="d3")
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]
    assert [h["train_loss"] for h in first.history] != [h["train_loss"] for h in other.history]


class Stop(Exception):
    pass


def test_interrupted_trial_resumes_into_the_same_run_with_every_epoch_once(store) -> None:
    straight = run(tiny_study("straight", epochs=5), store, work="straight")
    study = tiny_study("resumed", epochs=5)
    saved = store["root"] / "saved-state.pt"

    def stop_after_epoch_2(report) -> None:
        if report.epoch == 1:
            shutil.copy(report.checkpoint_dir / "state.pt", saved)  # the state after epoch 1
        if report.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        run(study, store, work="resumed", on_epoch=stop_after_epoch_2)
    client = MlflowClient(store["uri"])
    experiment = client.get_experiment_by_name("resumed")
    (failed,) = client.search_runs([experiment.experiment_id])
    assert failed.info.status == "FAILED" and failed.data.tags["skipsweep.status"] == "failed"
    assert "Stop" in failed.data.tags["error"]

    # As if the process died after logging epoch 2 but before saving its state: resume from epoch 1's.
    shutil.copy(saved, store["root"] / "resumed" / "state.pt")
    resumed = run(study, store, work="resumed")
    assert resumed.run_id == failed.info.run_id
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert resumed.test_metrics == straight.test_metrics
    history = client.get_metric_history(resumed.run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]
    logged = {m.step: m.value for m in history}
    assert [logged[e] for e in range(5)] == pytest.approx([h["train_loss"] for h in straight.history])
    assert client.get_run(resumed.run_id).info.status == "FINISHED"
    assert len(client.search_runs([experiment.experiment_id])) == 1
