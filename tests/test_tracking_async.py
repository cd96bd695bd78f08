"""Epoch metrics through the background writer, against a real SQLite MLflow store.

The writer must never block training, never lose or duplicate an epoch (retries,
crashes before a flush, resumes) and must fail the trial when the store is gone.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from trial_studies import small_study

import trainables.trial as trial_module
from trainables.config import parse_study
from trainables.schema import PARAMS_CHANGED_TAG
from trainables.tracking import MetricsNotLoggedError, MetricWriter, RetryPolicy, TrialRun
from trainables.tracking.run import params_changed
from trainables.trial import TrialSpec, run_trial


@pytest.fixture
def uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


FAST_RETRIES = RetryPolicy(attempts=3, first_wait=0.001, max_wait=0.001)  # exhausting them takes no time


def open_run(uri: str, name: str = "r", policy: RetryPolicy = FAST_RETRIES) -> TrialRun:
    return TrialRun(uri, "exp", f"id-{name}", name, {"study": "exp"}, {"learning_rate": 0.001}, retry_policy=policy)


def steps(uri: str, run_id: str, key: str) -> list[int]:
    return sorted(metric.step for metric in MlflowClient(uri).get_metric_history(run_id, key))


def test_the_store_drops_a_batch_logged_twice_with_the_same_timestamps(uri) -> None:
    with open_run(uri) as run:
        batch = [Metric("train_loss", 0.5, 1_700_000_000_000, step) for step in range(3)]
        run.client.log_batch(run.run_id, metrics=batch)
        run.client.log_batch(run.run_id, metrics=batch)  # as a retry whose first attempt had arrived
    assert steps(uri, run.run_id, "train_loss") == [0, 1, 2]


def test_a_retried_batch_that_had_reached_the_store_is_logged_once(uri, monkeypatch) -> None:
    with open_run(uri) as run:
        real_log_batch = run.client.log_batch
        failures = []

        def answer_lost_once(run_id, metrics=(), **kwargs):
            real_log_batch(run_id, metrics=metrics, **kwargs)
            if metrics and not failures:
                failures.append(1)
                raise MlflowException("connection reset after the write")

        monkeypatch.setattr(run.client, "log_batch", answer_lost_once)
        run.log_epoch(0, {"train_loss": 0.9, "val_dice": 0.1, "epoch_seconds": 1.0})
        run.flush()
    assert failures == [1]
    for key in ("train_loss", "val_dice", "epoch_seconds"):
        assert steps(uri, run.run_id, key) == [0]


def test_log_epoch_returns_while_the_store_is_busy_and_all_is_written_before_finished(uri, monkeypatch) -> None:
    release = threading.Event()
    with open_run(uri) as run:
        real_log_batch = run.client.log_batch

        calls = []

        def slow_store(run_id, metrics=(), **kwargs):
            if metrics:
                calls.append(sorted({metric.step for metric in metrics}))
                assert release.wait(timeout=60)
            real_log_batch(run_id, metrics=metrics, **kwargs)

        monkeypatch.setattr(run.client, "log_batch", slow_store)
        for epoch in range(3):  # would hang here if log_epoch waited for the store
            run.log_epoch(epoch, {"train_loss": 1.0 - epoch / 10, "val_dice": None, "epoch_seconds": 0.1})
        assert steps(uri, run.run_id, "train_loss") == []
        release.set()
    final = MlflowClient(uri).get_run(run.run_id)
    assert final.info.status == "FINISHED"
    assert steps(uri, run.run_id, "train_loss") == [0, 1, 2]
    assert steps(uri, run.run_id, "val_dice") == []
    assert len(calls) < 3 and sum(calls, []) == [0, 1, 2]  # what queued up behind the slow call went out at once


def test_a_write_that_fails_for_good_is_raised_in_the_training_thread(uri, monkeypatch) -> None:
    attempts = []
    with pytest.raises(MetricsNotLoggedError, match="store is down"), open_run(uri) as run:
        real_log_batch = run.client.log_batch

        def store_down_for_metrics(run_id, metrics=(), **kwargs):
            if metrics:
                attempts.append(1)
                raise MlflowException("store is down")
            real_log_batch(run_id, metrics=metrics, **kwargs)

        monkeypatch.setattr(run.client, "log_batch", store_down_for_metrics)
        run.log_epoch(0, {"train_loss": 0.9, "val_dice": None, "epoch_seconds": 1.0})
        run.flush()  # the next log_epoch would raise the same
    assert len(attempts) == FAST_RETRIES.attempts  # the run's policy, given to its writer thread
    final = MlflowClient(uri).get_run(run.run_id)
    assert final.info.status == "FAILED"
    assert "store is down" in final.data.tags["error"]


def test_a_failure_noticed_only_at_the_end_still_marks_the_run_failed(uri, monkeypatch) -> None:
    def disk_full(self, what, batch) -> None:
        raise OSError("no space left on device")

    with pytest.raises(MetricsNotLoggedError), open_run(uri) as run:
        monkeypatch.setattr(MetricWriter, "_write", disk_full)
        run.log_epoch(0, {"train_loss": 0.9, "val_dice": None, "epoch_seconds": 1.0})
    assert MlflowClient(uri).get_run(run.run_id).info.status == "FAILED"


def five_epoch_study(name: str):
    """The tests' small study, five epochs long, validated every second epoch and tested in domain only."""
    return parse_study(
        small_study(name, test_levels={"in_domain": {"kind": "none"}}, training={"epochs": 5, "val_every": 2})
    )


class Crash(Exception):
    pass


def test_a_trial_retries_its_tracking_calls_as_its_study_says(tmp_path, uri, monkeypatch) -> None:
    study = five_epoch_study("retries")
    study = study.model_copy(update={"tracking": study.tracking.model_copy(update={"retries": 3, "retry_wait": 0.25})})
    policies = []

    class RecordedRun(TrialRun):
        def __init__(self, *args, retry_policy: RetryPolicy, **kwargs) -> None:
            policies.append(retry_policy)
            raise Crash

    monkeypatch.setattr(trial_module, "TrialRun", RecordedRun)
    spec = TrialSpec("retries", "synthetic", "unet", 1.0, 0)
    with pytest.raises(Crash):
        run_trial(spec, study, work_dir=tmp_path / "work", tracking_uri=uri, cache_root=tmp_path / "cache")
    assert policies == [RetryPolicy(attempts=3, first_wait=0.25)]


def test_epochs_still_queued_when_a_trial_dies_are_logged_on_resume(tmp_path, uri, monkeypatch) -> None:
    cache = tmp_path / "cache"

    def trial(name: str, work: str, **kwargs):
        spec = TrialSpec(name, "synthetic", "unet", 1.0, 0)
        study = five_epoch_study(name)
        return run_trial(spec, study, work_dir=tmp_path / work, tracking_uri=uri, cache_root=cache, **kwargs)

    straight = trial("straight", "straight")

    # The process "dies" after saving the state of epoch 3, before the writer sent epochs 2 and 3.
    real_write = MetricWriter._write
    monkeypatch.setattr(
        MetricWriter, "_write", lambda self, what, batch: real_write(self, what, [m for m in batch if m.step < 2])
    )

    def die_after_epoch_3(report) -> None:
        if report.epoch == 3:
            raise Crash

    with pytest.raises(Crash):
        trial("crashed", "crashed", on_epoch=die_after_epoch_3)
    monkeypatch.undo()
    client = MlflowClient(uri)
    (failed,) = client.search_runs([client.get_experiment_by_name("crashed").experiment_id])
    assert steps(uri, failed.info.run_id, "train_loss") == [0, 1]  # the saved state claims 0-3

    resumed = trial("crashed", "crashed")
    assert resumed.run_id == failed.info.run_id
    assert steps(uri, resumed.run_id, "train_loss") == [0, 1, 2, 3, 4]
    assert steps(uri, resumed.run_id, "epoch_seconds") == [0, 1, 2, 3, 4]
    assert steps(uri, resumed.run_id, "val_dice") == [1, 3, 4]
    logged = {metric.step: metric.value for metric in client.get_metric_history(resumed.run_id, "train_loss")}
    assert [logged[epoch] for epoch in range(5)] == pytest.approx([row["train_loss"] for row in straight.history])
    assert resumed.test_metrics == straight.test_metrics
    assert client.get_run(resumed.run_id).info.status == "FINISHED"


def test_a_resumed_attempt_with_other_params_says_so_in_a_tag(uri) -> None:
    def attempt(params: dict, fail: bool) -> str:
        run = TrialRun(uri, "exp", "id-p", "p", {"study": "exp"}, params, retry_policy=FAST_RETRIES)
        with pytest.raises(RuntimeError) if fail else contextlib.nullcontext(), run:
            run.log_epoch(0, {"train_loss": 0.5})
            if fail:
                raise RuntimeError("node lost")
        return run.run_id

    first = attempt({"precision": "fp32", "torch_threads": 2}, fail=True)
    same = attempt({"precision": "fp32", "torch_threads": 2}, fail=True)  # resumed as it started: no tag
    assert same == first and PARAMS_CHANGED_TAG not in MlflowClient(uri).get_run(first).data.tags
    attempt({"precision": "bf16", "torch_threads": 2}, fail=True)  # resumed on a node with bf16
    attempt({"precision": "bf16", "torch_threads": 1}, fail=False)  # and then with one CPU
    run = MlflowClient(uri).get_run(first)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"precision": "fp32", "torch_threads": "2"}  # MLflow keeps the first values
    assert run.data.tags[PARAMS_CHANGED_TAG] == "precision=bf16; torch_threads=1"


def test_params_changed_lists_each_later_value_once() -> None:
    first = {"precision": "fp32", "torch_threads": "2", "learning_rate": "0.001"}
    assert params_changed(first, dict(first), None) == ""
    assert params_changed(first, {**first, "precision": "bf16"}, "") == "precision=bf16"
    assert params_changed(first, {**first, "precision": "bf16"}, "precision=bf16") == "precision=bf16"
    assert params_changed(first, {**first, "torch_threads": "1"}, "precision=bf16") == "precision=bf16; torch_threads=1"
    assert params_changed(first, {"new_param": "1"}, None) == ""  # a param the run never had is not a change
