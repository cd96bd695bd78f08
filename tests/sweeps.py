"""Helpers of the tests that run whole studies: a tiny study file, the orchestrator as a process, run queries."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import ROOT, kill_group, processes_mentioning, subprocess_env
from mlflow.tracking import MlflowClient
from trial_studies import merged, small_study

from trainables.schema import TRIAL_KIND, kind_filter

MAIN_COMMAND = ("-m", "orchestrator.run")


def write_study(folder: Path, name: str, seeds=(0,), epochs: int = 4, **changes) -> Path:
    """The tests' small study as a sweep: two variants x two alpha levels at 32 px, 4 trials of a few seconds each.

    ``changes`` are merged into it as :func:`trial_studies.small_study` merges them.
    """
    study = small_study(
        name,
        variants=["noskip_unet", "unet"],
        seeds=list(seeds),
        datasets={"synthetic": {"levels": [0.5, 1.0]}},
        training={"epochs": epochs, "val_every": 2},
        resources={"cpu": 0.5, "gpu": 0.25, "max_failures": 2},  # 4 trials at once on 2 CPUs
    )
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(merged(study, changes)))
    return path


def orchestrate_command(
    study: Path, folder: Path, *extra: str, tracking_uri: str | None = None, entry: tuple[str, ...] = MAIN_COMMAND
) -> list[str]:
    """The main command on a study of ``folder``; ``entry`` replaces ``-m orchestrator.run`` (a test's wrapper)."""
    return [
        sys.executable,
        *entry,
        "--config",
        str(study),
        "--tracking-uri",
        tracking_uri or f"sqlite:///{folder}/mlflow.db",
        "--storage",
        str(folder / "results"),
        "--cache",
        str(folder / "cache"),
        *extra,
    ]


def orchestrate(study: Path, folder: Path, *extra: str, env: dict | None = None, timeout: int = 480, **kwargs):
    """Run the orchestrator to the end (in a session of its own, killed whole if it overruns)."""
    process = subprocess.Popen(
        orchestrate_command(study, folder, *extra, **kwargs),
        cwd=ROOT,
        env=env or subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        from conftest import kill_group

        kill_group(process.pid)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def store_ready(uri: str, experiment: str) -> bool:
    """Whether the driver has made its store and ``experiment`` in it (always, for a server's URI).

    A SQLite store is read without MLflow (read-only, no schema work) until the experiment's row exists: the driver
    creates the store's schema under its lock, and a poll that opened the half-made store with MLflow would migrate
    it at the same time (seen in CI: the driver then exited 2).
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return True
    path = Path(uri[len(prefix) :])
    if not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as database:
            found = database.execute("SELECT 1 FROM experiments WHERE name = ?", (experiment,)).fetchone()
    except sqlite3.Error:  # no experiments table yet, or the file is mid-write
        return False
    return found is not None


def trial_runs(uri: str, experiment: str, kind: str = TRIAL_KIND) -> list:
    """The trial runs of ``experiment`` (or its runs of another ``skipsweep.kind``); none until the driver has made
    the store and the experiment (:func:`store_ready`: a poll never creates or migrates a store)."""
    if not store_ready(uri, experiment):
        return []
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], filter_string=kind_filter(kind))


def assert_every_epoch_once(uri: str, study: str, trials: int, epochs: int) -> list:
    """The study's ``trials`` trial runs, each FINISHED once with every epoch logged once; the runs."""
    runs = trial_runs(uri, study)
    assert len(runs) == trials, [run.info.run_name for run in runs]
    assert len({run.data.tags["skipsweep.trial_id"] for run in runs}) == trials
    client = MlflowClient(uri)
    for run in runs:
        assert run.info.status == "FINISHED", (run.info.run_name, run.data.tags.get("error"))
        for key in ("train_loss", "epoch_seconds"):
            assert epochs_logged(client, run.info.run_id, key) == list(range(epochs)), (run.info.run_name, key)
    return runs


def epochs_logged(client: MlflowClient, run_id: str, key: str = "train_loss") -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def wait_for(condition, timeout: float, what: str, every: float = 0.5, while_running=None):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``.

    ``while_running`` (a ``Popen``): fail at once, with its exit status, when that process has ended
    meanwhile (a driver that died does not make a test wait out its whole timeout).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the store may be mid-write or down on purpose
            value = None
        if value:
            return value
        if while_running is not None and while_running.poll() is not None:
            output = _output_of(while_running)
            raise AssertionError(f"waiting for {what}: the process ended with {while_running.returncode}\n{output}")
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _output_of(process) -> str:
    """The last lines a process wrote, when its stdout is a file (``start_driver``)."""
    name = getattr(process.stdout, "name", None) if process.stdout is not None else None
    try:
        return Path(name).read_text()[-3000:] if isinstance(name, str) else ""
    except OSError:
        return ""


def stop_the_driver(
    study: Path, folder: Path, ray_tmp: str, stop: str, until, grace: float = 15
) -> tuple[int, list[int], str]:
    """Run the main command (its Ray processes mention ``ray_tmp``), send ``stop`` once ``until(pid)`` returns.

    ``stop`` is ``SIGINT`` (Ctrl-C: to the whole process group) or ``SIGTERM`` (to the driver).
    Returns its exit status, the Ray processes still there ``grace`` seconds after it exited, and its output.
    """
    log = folder / "driver.log"
    driver = subprocess.Popen(
        orchestrate_command(study, folder),
        cwd=ROOT,
        env=subprocess_env(RAY_TMPDIR=ray_tmp),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        until(driver.pid)
        if stop == "SIGINT":  # Ctrl-C in a terminal: the whole foreground process group
            os.killpg(driver.pid, signal.SIGINT)
        else:  # `kill PID`, a scheduler's stop
            os.kill(driver.pid, signal.SIGTERM)
        status = driver.wait(timeout=60)
        deadline = time.monotonic() + grace
        while processes_mentioning(ray_tmp) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = processes_mentioning(ray_tmp)
    finally:
        kill_group(driver.pid)
    return status, left, log.read_text()
