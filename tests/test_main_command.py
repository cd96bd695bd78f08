"""The main command under real use: job env vars, interrupts, nothing that hangs, a loopback local cluster."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, kill_group, processes_mentioning, subprocess_env
from mlflow.tracking import MlflowClient
from sweeps import epochs_logged, orchestrate, stop_the_driver, trial_runs, wait_for, write_study

from analysis.__main__ import main as analysis_main
from orchestrator import interrupts
from orchestrator.cluster import JOB_CONFIG_ENV, check_trial_fits, forwarded_env, job_env_vars
from orchestrator.run import main
from trainables.tracking import STOP_REASON_TAG, RetryPolicy, TrialRun, mark_interrupted

FAST_RETRIES = RetryPolicy(attempts=2, first_wait=0.001, max_wait=0.001)


def open_run(uri: str, name: str) -> TrialRun:
    params = {"learning_rate": 0.001}
    return TrialRun(uri, "exp", f"id-{name}", name, {"study": "exp"}, params, retry_policy=FAST_RETRIES)


# settings passed through the job's runtime env


def test_the_driver_forwards_only_what_the_job_runtime_env_does_not_set(monkeypatch) -> None:
    job = {"runtime_env": {"env_vars": {"MLFLOW_TRACKING_URI": "sqlite:////a/mlflow.db"}, "working_dir": "x"}}
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps(job))
    environ = {"MLFLOW_TRACKING_URI": "sqlite:////a/mlflow.db", "SKIPSWEEP_RAY_NODE_IP": "127.0.0.2", "HOME": "/h"}
    assert job_env_vars() == {"MLFLOW_TRACKING_URI": "sqlite:////a/mlflow.db"}
    assert forwarded_env(environ, job_env_vars()) == {"SKIPSWEEP_RAY_NODE_IP": "127.0.0.2"}
    monkeypatch.delenv(JOB_CONFIG_ENV)
    assert job_env_vars() == {}
    assert forwarded_env(environ, {}) == {
        "MLFLOW_TRACKING_URI": "sqlite:////a/mlflow.db",
        "SKIPSWEEP_RAY_NODE_IP": "127.0.0.2",
    }


# interrupted and finished runs


def test_a_run_that_failed_then_finished_keeps_no_stale_error_or_stop_reason(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(RuntimeError), open_run(uri, "r") as run:
        raise RuntimeError("out of memory")
    client = MlflowClient(uri)
    client.set_tag(run.run_id, STOP_REASON_TAG, "driver stopped by SIGINT")
    assert client.get_run(run.run_id).data.tags["error"] == "RuntimeError: out of memory"
    with open_run(uri, "r") as again:
        assert again.resumed and again.run_id == run.run_id
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FINISHED"
    assert "error" not in finished.data.tags and STOP_REASON_TAG not in finished.data.tags
    assert finished.data.tags["skipsweep.status"] == "finished"


def test_mark_interrupted_kills_running_runs_and_those_failed_since_the_signal(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(RuntimeError), open_run(uri, "failed_before") as run:
        raise RuntimeError("an old failure")
    time.sleep(0.01)
    since = int(time.time() * 1000)
    with open_run(uri, "finished"):
        pass
    running = open_run(uri, "running").__enter__()
    with pytest.raises(SystemExit), open_run(uri, "failed_by_signal"):
        raise SystemExit(1)
    stopped = mark_interrupted(uri, "exp", "driver stopped by SIGTERM", since, FAST_RETRIES)
    assert stopped == ["failed_by_signal", "running"]
    client = MlflowClient(uri)
    states = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("exp").experiment_id])}
    assert {name: r.info.status for name, r in states.items()} == {
        "failed_before": "FAILED",
        "finished": "FINISHED",
        "running": "KILLED",
        "failed_by_signal": "KILLED",
    }
    assert states["running"].data.tags[STOP_REASON_TAG] == "driver stopped by SIGTERM"
    assert states["running"].data.tags["skipsweep.status"] == "killed"
    assert (
        run.run_id == states["failed_before"].info.run_id and STOP_REASON_TAG not in states["failed_before"].data.tags
    )
    running._close_writer()


def test_a_stop_signal_raises_interrupted_once_with_the_shell_exit_status() -> None:
    previous = interrupts.arm()
    try:
        with pytest.raises(interrupts.Interrupted) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert (caught.value.name, caught.value.exit_status) == ("SIGTERM", 143)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the clean-up is not cut short
    finally:
        interrupts.restore(previous)
    assert signal.getsignal(signal.SIGTERM) == previous[signal.SIGTERM]
    assert (
        interrupts.resume_command(["--config", "my study.yaml"])
        == "python -m orchestrator.run --config 'my study.yaml'"
    )


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_signal_while_trials_pend_stops_cleanly_and_the_same_command_resumes(tmp_path: Path, stop: str) -> None:
    epochs = 40  # over 32 images: a trial is mid-way for seconds (8 epochs over 8 images were gone in 0.1 s)
    resources = {"cpu": 1, "gpu": 0, "max_failures": 1, "max_concurrent_trials": 1}  # 1 runs, 3 pend
    data = {"synthetic": {"levels": [0.5, 1.0], "split": {"train": 32, "val": 4, "test": 4}}}
    study = write_study(tmp_path, "stopped", epochs=epochs, resources=resources, datasets=data)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ray_tmp = tempfile.mkdtemp(prefix="h1", dir="/tmp")  # this cluster's processes mention it
    env = subprocess_env(RAY_TMPDIR=ray_tmp)

    def a_trial_mid_way():  # running, with epochs left: the signal cannot land between two trials
        client = MlflowClient(uri)
        return [
            run
            for run in trial_runs(uri, "stopped")
            if run.info.status == "RUNNING"
            and 1 <= max(epochs_logged(client, run.info.run_id), default=-1) < epochs - 8
        ]

    status, left, output = stop_the_driver(
        study, tmp_path, ray_tmp, stop, lambda _pid: wait_for(a_trial_mid_way, 180, "a trial mid-way", every=0.2)
    )
    assert status == {"SIGINT": 130, "SIGTERM": 143}[stop], output[-3000:]
    assert not left, f"Ray processes left behind: {left}"
    assert "Traceback" not in output and "TypeError" not in output, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert f"stopped by {stop}" in last and "resume with: python -m orchestrator.run --config" in last, last
    runs = trial_runs(uri, "stopped")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert killed and all(r.data.tags[STOP_REASON_TAG] == f"driver stopped by {stop}" for r in killed)

    again = orchestrate(study, tmp_path, env=env)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    client = MlflowClient(uri)
    runs = trial_runs(uri, "stopped")
    assert len(runs) == 4
    for run in runs:
        assert run.info.status == "FINISHED"
        assert "error" not in run.data.tags and STOP_REASON_TAG not in run.data.tags, run.data.tags
        assert epochs_logged(client, run.info.run_id) == list(range(epochs))


@pytest.mark.slow
def test_sigterm_while_ray_starts_stops_cleanly(tmp_path: Path) -> None:
    """ray.init holds a SIGTERM handler of its own (sys.exit(15)) for the seconds a local cluster takes to start."""
    study = write_study(tmp_path, "starting", epochs=2)
    ray_tmp = tempfile.mkdtemp(prefix="h2", dir="/tmp")  # this cluster's processes mention it

    def cluster_starting(_pid: int) -> None:  # its first process is up: ray.init has seconds to go
        wait_for(lambda: processes_mentioning(ray_tmp), 120, "the local cluster to start", every=0.05)

    status, left, output = stop_the_driver(study, tmp_path, ray_tmp, "SIGTERM", cluster_starting)
    assert status == 143, output[-3000:]  # not Ray's 15
    assert not left, f"Ray processes left behind: {left}"
    last = output.strip().splitlines()[-1]
    assert "stopped by SIGTERM" in last and "resume with: python -m orchestrator.run --config" in last, last


# nothing hangs silently


def test_an_address_nothing_answers_at_is_refused_in_seconds(tmp_path: Path, capsys) -> None:
    study = write_study(tmp_path, "nowhere", epochs=1)
    started = time.monotonic()
    status = main(
        [
            "--config",
            str(study),
            "--address",
            "127.0.0.1:1",
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--storage",
            str(tmp_path / "results"),
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    assert status == 2 and time.monotonic() - started < 30
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: --address: 127.0.0.1:1: no Ray cluster answers"), error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["nowhere.yaml"]  # nothing created


def test_analysis_export_from_a_closed_port_fails_in_seconds(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)  # MLflow's own retries: minutes
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    status = analysis_main(
        ["export", "--study", "x", "--tracking-uri", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "out")]
    )
    assert status == 2 and time.monotonic() - started < 30
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"http://127.0.0.1:{port} does not answer" in error[0], error
    assert not (tmp_path / "out").exists()


def test_a_trial_larger_than_every_node_is_refused() -> None:
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 96.0}}]
    check_trial_fits(2, nodes, "s.yaml")
    with pytest.raises(ValueError, match=r"s.yaml: resources.cpu: 64 CPUs per trial, .* largest node .* has 2"):
        check_trial_fits(64, nodes, "s.yaml")


def test_a_gpu_share_larger_than_every_node_is_refused() -> None:
    nodes = [
        {"Alive": True, "Resources": {"CPU": 8.0}},  # a CPU-only head
        {"Alive": True, "Resources": {"CPU": 2.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 8.0}},
    ]
    check_trial_fits(2, nodes, "s.yaml", 0.25)
    check_trial_fits(2, nodes, "s.yaml", 1.0)
    with pytest.raises(ValueError, match=r"s.yaml: resources.gpu: 2 GPUs per trial, but no node .* more than 1"):
        check_trial_fits(1, nodes, "s.yaml", 2.0)
    with pytest.raises(ValueError, match=r"no node of the Ray cluster has both 4 CPUs and 0.5 GPUs"):
        check_trial_fits(4, nodes, "s.yaml", 0.5)  # 8 CPUs on one node, the GPU on another


@pytest.mark.slow
def test_resources_cpu_beyond_the_cluster_is_refused_after_ray_starts_not_waited_on(tmp_path: Path) -> None:
    study = write_study(tmp_path, "toobig", epochs=1, resources={"cpu": 64, "gpu": 0})
    result = orchestrate(study, tmp_path, timeout=120)  # today: pends forever, a warning a minute
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    assert "resources.cpu: 64 CPUs per trial" in result.stderr.strip().splitlines()[-1]
    assert not trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "toobig")


# exposure of a local cluster

LISTENERS = """
import subprocess, time
from pathlib import Path
from orchestrator import interrupts
from orchestrator.cluster import connect_ray

def descendants(root):
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    found = {root}
    while grown := {pid for pid, parent in parents.items() if parent in found} - found:
        found |= grown
    return found

ray = connect_ray(None, False)
time.sleep(3)
ours = descendants(__import__("os").getpid())
for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines():
    if any(f"pid={pid}," in line for pid in ours):
        print(line.split()[3])
ray.shutdown()
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or not Path("/usr/bin/ss").exists(), reason="needs Linux and ss")
def test_a_local_cluster_binds_its_node_to_loopback_and_starts_no_dashboard(tmp_path: Path) -> None:
    env = subprocess_env()
    env.pop("SKIPSWEEP_RAY_NODE_IP")  # the default, as a user gets it
    driver = subprocess.Popen(
        [sys.executable, "-c", LISTENERS], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, _ = driver.communicate(timeout=120)
    finally:
        kill_group(driver.pid)
    addresses = [line.rpartition(":")[0] for line in out.split()]
    assert addresses, out
    named = [address for address in addresses if address not in ("*", "0.0.0.0", "[::]")]
    assert named and all(address.startswith("127.") for address in named), addresses  # none on the host's address
    assert not [line for line in out.split() if line.endswith(":8265")], out  # no dashboard
