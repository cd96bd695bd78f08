"""Shared fixtures: a Ray head started with `ray start` and stopped by its own processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    """PIDs of processes whose command line contains ``text`` (e.g. a cluster's own temp dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: token auth set explicitly (Ray 2.60 local clusters), no usage stats."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra)
    return env


@pytest.fixture
def ray_head():
    """A real Ray head (`ray start --head`, 2 CPUs) on free ports; every process it started is killed after."""
    temp_dir = tempfile.mkdtemp(prefix="ssr", dir="/tmp")  # short: Ray puts unix sockets under it
    gcs_port, dashboard_port = free_port(), free_port()
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        f"--port={gcs_port}",
        f"--dashboard-port={dashboard_port}",
        "--dashboard-host=127.0.0.1",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp_dir}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--disable-usage-stats",
        f"--ray-client-server-port={free_port()}",
    ]
    try:
        started = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        yield {
            "address": f"127.0.0.1:{gcs_port}",
            "dashboard": f"http://127.0.0.1:{dashboard_port}",
            "temp_dir": temp_dir,
        }
    finally:
        kill_all(processes_mentioning(temp_dir))
        deadline = time.monotonic() + 30
        while processes_mentioning(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert processes_mentioning(temp_dir) == [], "Ray processes survived the test"
