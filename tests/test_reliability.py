"""Faults on real components, loopback only: a remote MLflow server that goes away, a Ray worker node that dies,
a driver killed with SIGKILL, and two runs of one study that must agree to the last digit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import (
    LOOPBACK_HEAD,
    LOOPBACK_WORKER,
    ROOT,
    free_port,
    kill_group,
    process_tree,
    start_ray_node,
    subprocess_env,
)
from mlflow.tracking import MlflowClient
from sweeps import (
    assert_every_epoch_once,
    epochs_logged,
    orchestrate,
    orchestrate_command,
    trial_runs,
    wait_for,
    write_study,
)

from analysis.export import export_study

pytestmark = pytest.mark.slow


def start_driver(study: Path, folder: Path, *extra: str, tracking_uri: str | None = None) -> subprocess.Popen:
    """The orchestrator in a session of its own, its output in files (a pipe nobody reads would block it)."""
    return subprocess.Popen(
        orchestrate_command(study, folder, *extra, tracking_uri=tracking_uri),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=open(folder / f"driver-{time.monotonic_ns()}.out", "w"),  # noqa: SIM115 - the child owns it
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def running_epoch(uri: str, study: str, at_least: int, **tags: str):
    """A RUNNING trial run (with ``tags``) that has logged epoch ``at_least``, or None."""
    client = MlflowClient(uri)
    for run in trial_runs(uri, study):
        if run.info.status != "RUNNING" or any(run.data.tags.get(k) != v for k, v in tags.items()):
            continue
        if max(epochs_logged(client, run.info.run_id), default=-1) >= at_least:
            return run
    return None


def test_remote_server_stopped_and_restarted_mid_study_loses_nothing(tmp_path: Path, mlflow_server) -> None:
    epochs = 8
    study = write_study(tmp_path, "remote", epochs=epochs, tracking={"retries": 10, "retry_wait": 0.5})
    driver = start_driver(study, tmp_path, tracking_uri=mlflow_server.uri)
    try:
        wait_for(lambda: running_epoch(mlflow_server.uri, "remote", 1), 240, "a trial at epoch 1", while_running=driver)
        mlflow_server.stop()
        time.sleep(3)  # trials train on and retry their logging meanwhile
        mlflow_server.start()
        assert driver.wait(timeout=400) == 0
    finally:
        kill_group(driver.pid)

    runs = assert_every_epoch_once(mlflow_server.uri, "remote", 4, epochs)
    client = MlflowClient(mlflow_server.uri)
    for run in runs:
        names = {item.path for item in client.list_artifacts(run.info.run_id)}
        assert {"per_image.parquet", "split_manifest.json", "checkpoints"} <= names
        assert {item.path for item in client.list_artifacts(run.info.run_id, "checkpoints")} == {
            "checkpoints/best.pt",
            "checkpoints/last.pt",
        }
    assert sorted((mlflow_server.root / "artifacts").rglob("per_image.parquet")), "artifacts did not reach the server"


def test_a_postgresql_backed_server_carries_a_study_through_a_database_restart(
    tmp_path: Path, mlflow_server_postgres
) -> None:
    server = mlflow_server_postgres
    epochs = 8
    study = write_study(tmp_path, "pg", epochs=epochs, tracking={"retries": 10, "retry_wait": 0.5})
    driver = start_driver(study, tmp_path, tracking_uri=server.uri)
    try:
        wait_for(lambda: running_epoch(server.uri, "pg", 1), 240, "a trial at epoch 1", while_running=driver)
        server.database.restart()  # the database behind the server goes away and comes back (pg_ctl, its PID)
        assert driver.wait(timeout=400) == 0
    finally:
        kill_group(driver.pid)

    runs = assert_every_epoch_once(server.uri, "pg", 4, epochs)
    database = server.database
    assert database.sql("SELECT count(*) FROM runs WHERE status = 'FINISHED'", "mlflow").strip() == "4"
    rows = database.sql(
        "SELECT count(*), count(DISTINCT (run_uuid, step)) FROM metrics WHERE key = 'train_loss'", "mlflow"
    )
    assert rows.strip() == f"{4 * epochs}|{4 * epochs}"  # in PostgreSQL itself: every epoch once, none twice
    exported = export_study("pg", tmp_path / "export", tracking_uri=server.uri)
    assert exported.n_runs == 4
    assert set(pd.read_parquet(tmp_path / "export" / "runs.parquet")["run_id"]) == {run.info.run_id for run in runs}


def test_server_down_past_the_retry_budget_fails_clearly_and_the_rerun_completes(tmp_path: Path, mlflow_server) -> None:
    epochs = 30
    study = write_study(
        tmp_path,
        "outage",
        epochs=epochs,
        tracking={"retries": 2, "retry_wait": 0.2},
        resources={"cpu": 0.5, "gpu": 0, "max_failures": 0},
    )
    driver = start_driver(study, tmp_path, tracking_uri=mlflow_server.uri)
    try:
        wait_for(lambda: running_epoch(mlflow_server.uri, "outage", 1), 240, "a trial at epoch 1", while_running=driver)
        mlflow_server.stop()
        assert driver.wait(timeout=300) == 1, "the driver must report the failed trials"
    finally:
        kill_group(driver.pid)
    output = "".join(path.read_text() for path in tmp_path.glob("driver-*.out"))
    assert "failed after retries" in output

    mlflow_server.start()
    failed = [run for run in trial_runs(mlflow_server.uri, "outage") if run.info.status != "FINISHED"]
    assert failed, "no trial noticed the outage"
    again = orchestrate(study, tmp_path, tracking_uri=mlflow_server.uri)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert_every_epoch_once(mlflow_server.uri, "outage", 4, epochs)


def test_worker_node_killed_mid_study_its_trials_finish_on_the_head(tmp_path: Path, mlflow_server) -> None:
    epochs = 40  # long enough that the trial on the worker is still training when its node dies
    study = write_study(
        tmp_path, "nodes", epochs=epochs, resources={"cpu": 1, "gpu": 0, "max_failures": 3}
    )  # one trial per node at a time
    temp_head = tempfile.mkdtemp(prefix="ssh", dir="/tmp")
    temp_worker = tempfile.mkdtemp(prefix="ssw", dir="/tmp")
    port = free_port()
    groups = [start_ray_node(temp_head, num_cpus=1, head_port=port, dashboard_port=free_port())]
    driver = None
    try:
        groups.append(start_ray_node(temp_worker, num_cpus=1, address=f"{LOOPBACK_HEAD}:{port}"))
        driver = start_driver(
            study, tmp_path, "--address", f"{LOOPBACK_HEAD}:{port}", "--checkpoint-every", "1",
            tracking_uri=mlflow_server.uri,
        )  # fmt: skip
        on_worker = wait_for(
            lambda: running_epoch(mlflow_server.uri, "nodes", 2, **{"ray.node_ip": LOOPBACK_WORKER}),
            240,
            "a trial on the worker node at epoch 2",
            while_running=driver,
        )
        seen = {run.data.tags.get("ray.node_ip") for run in trial_runs(mlflow_server.uri, "nodes")}
        assert seen == {LOOPBACK_HEAD, LOOPBACK_WORKER}, seen
        kill_group(groups[1])  # the whole worker node: raylet, agents and its trial processes
        assert driver.wait(timeout=400) == 0
    finally:
        if driver is not None:
            kill_group(driver.pid)
        for group in groups:
            kill_group(group)

    runs = assert_every_epoch_once(mlflow_server.uri, "nodes", 4, epochs)
    moved = next(run for run in runs if run.info.run_id == on_worker.info.run_id)
    assert moved.data.tags["ray.node_ip"] == LOOPBACK_HEAD, "the killed node's trial did not finish on the head"
    assert int(moved.data.tags["skipsweep.resumed_at_epoch"]) >= 1, "it started again instead of resuming"
    assert {run.data.tags["ray.node_id"] for run in runs} != set(), "node ids are recorded"
    caches = [path for path in (tmp_path / "cache").iterdir() if not path.name.endswith(".lock")]
    assert len(caches) == 1 and caches[0].name.startswith("synthetic-"), caches  # one machine: one shared cache


def test_driver_killed_with_sigkill_then_rerun_finishes_without_duplicates(tmp_path: Path) -> None:
    epochs = 20
    study = write_study(tmp_path, "driver", epochs=epochs, resources={"cpu": 1, "gpu": 0, "max_failures": 2})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    driver = start_driver(study, tmp_path, "--checkpoint-every", "1")
    cluster: set[int] = set()
    try:
        client = MlflowClient(uri)

        def one_finished_one_running():
            runs = trial_runs(uri, "driver")
            done = [run for run in runs if run.info.status == "FINISHED"]
            return done if done and running_epoch(uri, "driver", 1) is not None else None

        wait_for(one_finished_one_running, 300, "a finished trial and a running one", while_running=driver)
        cluster = process_tree(driver.pid)  # now: once the driver is dead its trials no longer lead back to it
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        # what the dead driver's local cluster left behind, as an operator would; a trial whose raylet died with the
        # driver is an orphan no tree walk finds, and could finish its run after the count below (seen once in CI:
        # the rerun's count of finished trials differed from the test's)
        kill_group(driver.pid, also=cluster)
    runs = trial_runs(uri, "driver")
    before = {
        run.info.run_id: (run.info.end_time, epochs_logged(client, run.info.run_id))
        for run in runs
        if run.info.status == "FINISHED"
    }
    assert before and len(before) < 4, "the kill came before any trial finished or after all did"

    again = orchestrate(study, tmp_path, "--checkpoint-every", "1")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert f"{len(before)} already finished in MLflow" in again.stdout
    runs = assert_every_epoch_once(uri, "driver", 4, epochs)
    for run in runs:
        if run.info.run_id in before:  # not retrained: same end time, same history
            assert (run.info.end_time, epochs_logged(client, run.info.run_id)) == before[run.info.run_id]
    assert any("skipsweep.resumed_at_epoch" in run.data.tags for run in runs), "no interrupted trial resumed"


def test_the_quick_study_twice_gives_identical_epoch_metrics(tmp_path: Path) -> None:
    quick = yaml.safe_load((ROOT / "conf" / "quick.yaml").read_text())
    quick["training"]["epochs"] = 3  # the quick study, shortened; everything else as shipped
    quick["resources"] = {"cpu": 1, "gpu": 0}
    exports = []
    for attempt in ("first", "second"):
        folder = tmp_path / attempt
        folder.mkdir()
        study = folder / "quick.yaml"
        study.write_text(yaml.safe_dump(quick))
        result = orchestrate(study, folder)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        export_study("quick", folder / "export", tracking_uri=f"sqlite:///{folder}/mlflow.db")
        runs = pd.read_parquet(folder / "export" / "runs.parquet")[["run_id", "run_name"]]
        exports.append(pd.read_parquet(folder / "export" / "epochs.parquet").merge(runs, on="run_id"))
    key = ["run_name", "epoch"]
    first, second = (frame.sort_values(key).reset_index(drop=True) for frame in exports)
    assert len(first) == 6 * 3
    assert first["train_loss"].notna().all()
    columns = key + ["train_loss", "val_dice"]
    pd.testing.assert_frame_equal(first[columns], second[columns], check_exact=True)
