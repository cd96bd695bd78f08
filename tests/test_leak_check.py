"""The process-leak check after every test can fail: a leaked Ray/MLflow process is killed and reported."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

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


TWO_WORKERS = """
import subprocess, sys, time
from pathlib import Path
from conftest import subprocess_env

HANDSHAKE = Path(sys.argv[0]).parent  # replaced below


def _wait(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, path
        time.sleep(0.05)


def test_a_starts_a_process_while_b_runs():
    _wait(HANDSHAKE / "b_started")  # b's leak check has taken its list of processes before this one starts
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "mlflow-leak-probe"], env=subprocess_env()
    )
    (HANDSHAKE / "a_started").touch()
    time.sleep(20)  # longer than the leak check's grace: b's check ends while this process still runs
    process.kill()
    process.wait()


def test_b_ends_while_the_process_of_a_runs():
    (HANDSHAKE / "b_started").touch()
    _wait(HANDSHAKE / "a_started")
"""


@pytest.mark.slow
def test_under_xdist_one_workers_processes_are_no_leak_of_the_other(tmp_path):
    """Two xdist workers: a process the first starts while the second runs is not the second's leak (each worker
    marks its processes with its own name); with one mark for both, the second's check would kill it and fail."""
    module = tmp_path / "test_two_workers.py"
    module.write_text(TWO_WORKERS.replace("Path(sys.argv[0]).parent  # replaced below", f"Path({str(tmp_path)!r})"))
    tests = Path(__file__).parent
    environment = subprocess_env(PYTHONPATH=str(tests))
    environment.pop("SKIPSWEEP_TEST_SESSION")  # the nested run is a test session of its own
    environment.pop("PYTEST_XDIST_WORKER", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-n", "2", "-p", "no:cacheprovider", str(module)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
