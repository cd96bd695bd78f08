"""One owner per study and per trial, and a corrupt trial state that no longer blocks its trial.

The lease and lock tests use real processes (a holder that is SIGKILLed) and a real SQLite store, without Ray.
The two slow tests run the real command against a real store and check it: one run per trial key, every step of
``train_loss`` and ``val_dice`` exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, kill_group, subprocess_env
from mlflow.tracking import MlflowClient
from sweeps import epochs_logged, orchestrate, orchestrate_command, trial_runs, wait_for, write_study

from orchestrator.expand import expand
from orchestrator.ownership import DRIVER_OWNER, LEASE_TAG, StudyLease, claim_study
from trainables.config import StudyConfigError, load_study
from trainables.guard import TrialBusyError
from trainables.schema import RESUMED_TAG, STATE_RECOVERED_TAG
from trainables.state import STATE_FILE
from trainables.trial import run_trial

HOLD = """
import sys, time
from pathlib import Path
kind, storage, uri = sys.argv[1:4]
if kind == "study":
    from orchestrator.ownership import claim_study
    claim_study("owned", storage, uri, "owned", ttl=float(sys.argv[4]), settle=0)
else:
    from trainables.guard import hold_trial
    held = hold_trial(Path(storage), "unet a1.00 s0 synthetic")
    held.__enter__()
print("held", flush=True)
time.sleep(120)
"""


def start_holder(kind: str, storage: str, uri: str = "", ttl: float = 120) -> subprocess.Popen:
    """A process that takes the study lease (or a trial's lock) and keeps it until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, kind, storage, uri, str(ttl)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in holder.stdout:  # MLflow may log a few lines first (a new store)
        seen.append(line)
        if line.strip() == "held":
            return holder
    raise AssertionError("the holder ended without taking the lock:\n" + "".join(seen))


def kill(holder: subprocess.Popen) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)


def lease_tag(uri: str, experiment: str) -> dict | None:
    found = MlflowClient(uri).get_experiment_by_name(experiment)
    return json.loads(found.tags[LEASE_TAG]) if LEASE_TAG in found.tags else None


def test_second_driver_is_refused_naming_the_owner_and_a_sigkilled_owner_is_taken_over(tmp_path: Path) -> None:
    storage, uri = str(tmp_path / "results"), f"sqlite:///{tmp_path}/mlflow.db"
    holder = start_holder("study", storage, uri)
    try:
        with pytest.raises(StudyConfigError) as refused:
            claim_study("owned", storage, uri, "owned", settle=0)
        message = str(refused.value)
        assert message.startswith(
            f"{storage}/owned/driver.lock: study 'owned' is already being run by pid {holder.pid}"
        )
        assert f"on host {os.uname().nodename} since 20" in message and "\n" not in message
        kill(holder)
        lease = claim_study("owned", storage, uri, "owned", settle=0)  # at once: the kernel dropped the dead lock
        try:
            assert json.loads((tmp_path / "results" / "owned" / DRIVER_OWNER).read_text())["pid"] == os.getpid()
            assert lease_tag(uri, "owned")["pid"] == os.getpid()  # the dead driver's unexpired lease, taken over
        finally:
            lease.release()
        assert lease_tag(uri, "owned") is None and not (tmp_path / "results" / "owned" / DRIVER_OWNER).exists()
    finally:
        kill_group(holder.pid)


def test_storage_uri_relies_on_the_mlflow_lease_until_it_expires(tmp_path: Path) -> None:
    storage, uri = "s3://bucket/results", f"sqlite:///{tmp_path}/mlflow.db"
    holder = start_holder("study", storage, uri, ttl=3)
    try:
        refused_at = time.time()
        with pytest.raises(StudyConfigError, match=rf"already being run by pid {holder.pid} .* lease expires at"):
            StudyLease("owned", storage, uri, "owned", ttl=3, settle=0).claim()
        # the heartbeat renews every ttl / 4 = 0.75 s; a loaded machine gets up to 20 s before this fails
        wait_for(lambda: lease_tag(uri, "owned")["expires"] > refused_at + 3, 20, "the owner's heartbeat to renew")
        kill(holder)
        with pytest.raises(StudyConfigError):  # dead, but its lease has not expired yet: nothing proves it dead
            StudyLease("owned", storage, uri, "owned", ttl=3, settle=0).claim()
        wait_for(lambda: lease_tag(uri, "owned")["expires"] < time.time(), 10, "the dead owner's lease to expire")
        lease = StudyLease("owned", storage, uri, "owned", ttl=3, settle=0)
        lease.claim()
        assert lease_tag(uri, "owned")["pid"] == os.getpid()
        lease.release()
        assert lease_tag(uri, "owned") is None
    finally:
        kill_group(holder.pid)


def blocked_signals(thread_id: int) -> set[int]:
    """The signals a thread of this process blocks, from /proc."""
    status = Path(f"/proc/self/task/{thread_id}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
    return {number for number in range(1, 65) if mask >> (number - 1) & 1}


def test_the_lease_heartbeat_blocks_stop_signals_so_they_reach_the_main_thread(tmp_path: Path) -> None:
    # A SIGTERM the kernel gave the heartbeat while ray.init had Ray's failure handler in place aborted the driver.
    lease = StudyLease("quiet", str(tmp_path / "results"), f"sqlite:///{tmp_path}/mlflow.db", "quiet", ttl=30, settle=0)
    lease.claim()
    try:
        assert {signal.SIGINT, signal.SIGTERM} <= blocked_signals(lease._heartbeat.native_id)
        assert not {signal.SIGINT, signal.SIGTERM} & blocked_signals(threading.main_thread().native_id)
    finally:
        lease.release()


def tiny_study(folder: Path, name: str, epochs: int = 3, levels=(1.0,)) -> Path:
    return write_study(
        folder,
        name,
        epochs=epochs,
        variants=["unet"],
        datasets={"synthetic": {"levels": list(levels), "split": {"train": 8, "val": 4, "test": 4}}},
        resources={"cpu": 1, "gpu": 0, "max_failures": 0},
    )


def test_a_duplicate_trial_stops_before_logging_anything(tmp_path: Path) -> None:
    study = load_study(tiny_study(tmp_path, "dup"))
    spec = expand(study)[0]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    holder = start_holder("trial", str(tmp_path / "work"))
    try:
        with pytest.raises(TrialBusyError, match=rf"already running in pid {holder.pid} on host"):
            run_trial(spec, study, work_dir=tmp_path / "work", tracking_uri=uri, cache_root=tmp_path / "cache")
    finally:
        kill_group(holder.pid)
    assert trial_runs(uri, "dup") == []


class Crash(RuntimeError):
    pass


def crash_after(last_epoch: int):
    def on_epoch(report) -> None:
        if report.epoch == last_epoch:
            raise Crash("stopped by the test")

    return on_epoch


def assert_steps_once(uri: str, study: str, trials: int, epochs: int, val_steps: list[int]) -> list:
    runs = trial_runs(uri, study)
    assert len(runs) == trials and len({run.data.tags["skipsweep.trial_id"] for run in runs}) == trials
    client = MlflowClient(uri)
    for run in runs:
        assert run.info.status == "FINISHED", (run.info.run_name, run.data.tags.get("error"))
        assert epochs_logged(client, run.info.run_id, "train_loss") == list(range(epochs))
        assert epochs_logged(client, run.info.run_id, "val_dice") == val_steps
    return runs


@pytest.mark.parametrize("damage", ["empty", "truncated", "not a state"])
def test_corrupt_state_is_set_aside_and_the_trial_restarts_without_logging_a_step_twice(tmp_path, damage) -> None:
    study = load_study(tiny_study(tmp_path, "corrupt"))
    spec = expand(study)[0]
    uri, work = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "work"
    trial = {"work_dir": work, "tracking_uri": uri, "cache_root": tmp_path / "cache"}
    with pytest.raises(Crash):
        run_trial(spec, study, on_epoch=crash_after(1), **trial)
    state = work / STATE_FILE
    good = state.read_bytes()
    if damage == "not a state":
        torch.save({"model": {}}, state)
    else:
        state.write_bytes(b"" if damage == "empty" else good[: len(good) // 2])

    result = run_trial(spec, study, **trial)

    (run,) = assert_steps_once(uri, "corrupt", 1, 3, [1, 2])
    assert "did not load" in run.data.tags[STATE_RECOVERED_TAG] and run.data.tags[RESUMED_TAG] == "0"
    assert len(list(work.parent.glob(f"{work.name}.{STATE_FILE}.corrupt-*"))) == 1  # beside the work folder
    logged = MlflowClient(uri).get_metric_history(run.info.run_id, "train_loss")
    first_attempt = {metric.step: metric.value for metric in logged}
    again = {row["epoch"]: row["train_loss"] for row in result.history}
    assert again == pytest.approx(first_attempt, rel=1e-6), "the restart trained differently from the logged epochs"


@pytest.mark.slow
def test_second_driver_on_a_running_study_exits_2_and_the_record_stays_whole(tmp_path: Path) -> None:
    study = tiny_study(tmp_path, "twice", epochs=3, levels=(0.5, 1.0))
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # fresh: the second driver must not race on its schema either
    with open(tmp_path / "first.out", "w") as output:
        first = subprocess.Popen(
            orchestrate_command(study, tmp_path),
            cwd=ROOT,
            env=subprocess_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: (tmp_path / "results" / "twice" / DRIVER_OWNER).exists(), 120, "the first driver's lease")
        second = orchestrate(study, tmp_path, timeout=120)
        assert first.poll() is None, "the first driver ended before the second one tried: the test proves nothing"
        assert second.returncode == 2, (second.stdout + second.stderr)[-3000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr
        assert f"already being run by pid {first.pid} on host" in lines[0]
        assert first.wait(timeout=300) == 0, (tmp_path / "first.out").read_text()[-3000:]
    finally:
        kill_group(first.pid)
    assert_steps_once(uri, "twice", 2, 3, [1, 2])


@pytest.mark.slow
def test_truncated_state_in_storage_no_longer_blocks_the_real_command(tmp_path: Path) -> None:
    study_file = tiny_study(tmp_path, "mended", epochs=3)
    study = load_study(study_file)
    spec = expand(study)[0]
    uri, work = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "results" / "mended" / "work" / spec.trial_id
    with pytest.raises(Crash):  # an earlier driver's trial that died after epoch 1, leaving its state in storage
        run_trial(spec, study, work_dir=work, tracking_uri=uri, cache_root=tmp_path / "cache", on_epoch=crash_after(1))
    state = work / STATE_FILE
    state.write_bytes(state.read_bytes()[:100])  # cut mid-write

    result = orchestrate(study_file, tmp_path, timeout=240)

    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (run,) = assert_steps_once(uri, "mended", 1, 3, [1, 2])
    assert "did not load" in run.data.tags[STATE_RECOVERED_TAG]
    assert len(list(work.parent.glob(f"{spec.trial_id}.{STATE_FILE}.corrupt-*"))) == 1  # kept for a post-mortem
