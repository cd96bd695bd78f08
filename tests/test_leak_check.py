"""The process-leak check after every test can fail: a leaked Ray/MLflow process is killed and reported."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from conftest import check_no_stray_processes, cluster_pids, subprocess_env

SLEEPER = [sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1]))"]


def started(arguments: list[str]) -> subprocess.Popen:
    """A marked process whose command line names MLflow, returned once the check can see it."""
    process = subprocess.Popen([*SLEEPER, *arguments, "mlflow-leak-probe"], env=subprocess_env())
    deadline = time.monotonic() + 10
    while process.pid not in cluster_pids() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process


def test_a_leaked_process_fails_the_check_and_is_killed():
    before = cluster_pids()
    leak = started(["60"])
    try:
        with pytest.raises(pytest.fail.Exception, match=rf"1 Ray/MLflow process\(es\) outlived the test.*{leak.pid}"):
            check_no_stray_processes(before, grace=1.0)
        assert leak.wait(timeout=10) == -signal.SIGKILL  # cleaned up, so the next test starts clean
    finally:
        leak.kill()
        leak.wait(timeout=10)


def test_a_process_that_ends_within_the_grace_period_is_no_leak():
    before = cluster_pids()
    quick = started(["1.0"])
    assert quick.poll() is None  # still running when the check starts
    check_no_stray_processes(before, grace=10.0)
    assert quick.wait(timeout=10) == 0
