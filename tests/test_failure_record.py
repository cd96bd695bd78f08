"""A failed trial: one line in the driver's log, the whole traceback kept in its MLflow run."""

from __future__ import annotations

import io
import logging
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.progress import ProgressPrinter
from trainables.spec import TrialSpec
from trainables.tracking import RetryPolicy, TrialRun

QUICK = RetryPolicy(attempts=2, first_wait=0.001, max_wait=0.001)


def test_a_failed_attempt_keeps_its_whole_traceback_as_an_artifact(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def deep_in_training() -> None:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError), TrialRun(uri, "exp", "id-a", "a", {}, {}, retry_policy=QUICK) as run:
        deep_in_training()
    client = MlflowClient(uri)
    (kept,) = client.list_artifacts(run.run_id, "failed_attempts")
    text = Path(client.download_artifacts(run.run_id, kept.path, str(tmp_path))).read_text()
    assert text.startswith("Traceback (most recent call last):") and "in deep_in_training" in text
    assert text.strip().endswith("RuntimeError: CUDA out of memory")
    assert client.get_run(run.run_id).data.tags["error"] == "RuntimeError: CUDA out of memory"


def test_a_failed_trial_is_one_progress_line_with_its_run_name_and_error(tmp_path: Path) -> None:
    spec = TrialSpec(study="s", dataset="synthetic", variant="unet", train_alpha=0.5, seed=1)
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  File ...\nRuntimeError: CUDA out of memory\n")
    trial = SimpleNamespace(trial_id="abc_00000", config={"trial": asdict(spec)}, error_file=str(error_file))
    out = io.StringIO()
    printer = ProgressPrinter("s", ["unet"], started=0.0, stream=out)
    printer.on_trial_recover(0, [trial], trial)
    printer.on_trial_error(0, [trial], trial)
    lines = out.getvalue().splitlines()
    said = f"[s] {spec.run_name} failed: RuntimeError: CUDA out of memory"
    assert lines[:2] == [f"{said}; retrying from its last checkpoint", f"{said}; no retries left"]


def test_tune_and_train_log_records_become_one_line_each() -> None:
    from orchestrator.sweep import _OneLine

    def record(name: str, message: str, error: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(error), error, None) if error else None
        return logging.LogRecord(name, logging.ERROR, "x.py", 1, message, None, exc_info)

    task = RuntimeError("ray::ImplicitFunc.train() (pid=1)\n  File x, line 2\nRuntimeError: unexpected pos 64 vs 0")
    failed = record("ray.tune.execution.tune_controller", "Trial task failed for trial t1", task)
    sync_log = "Sync failed:\nTraceback (most recent call last):\nOSError: [Errno 28]"
    synced = record("ray.train._internal.syncer", sync_log)
    other = record("mlflow.store", "first\nsecond")
    for each in (failed, synced, other):
        assert _OneLine().filter(each)
    assert failed.getMessage() == "Trial task failed for trial t1 ... RuntimeError: unexpected pos 64 vs 0"
    assert failed.exc_info is None
    assert synced.getMessage() == "Sync failed: ... OSError: [Errno 28]"
    assert other.getMessage() == "first\nsecond"  # not Ray's: left alone
