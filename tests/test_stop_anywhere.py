"""A study stopped at random moments: every SIGINT/SIGTERM ends in one line, exit 130/143, and the record stays whole.

The moments fall anywhere after the driver armed its handlers: loading the study, the checks, data preparation,
opening the store, starting Ray, inside Ray's waits while trials run, the summary. ``SKIPSWEEP_STOPS`` sets how many
stops (4 by default) and ``SKIPSWEEP_STOP_SEED`` the moments, for a longer hunt by hand.
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import time
from pathlib import Path

import pytest
from conftest import subprocess_env
from mlflow.tracking import MlflowClient
from sweeps import epochs_logged, orchestrate, stop_the_driver, trial_runs, wait_for, write_study

from trainables.schema import STOP_REASON_TAG

STOPS = int(os.environ.get("SKIPSWEEP_STOPS", "4"))
SEED = int(os.environ.get("SKIPSWEEP_STOP_SEED", "0"))
EPOCHS = 20


def armed(pid: int) -> bool:
    """The driver catches SIGTERM: its handlers are in place (Python alone leaves SIGTERM at its default)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


@pytest.mark.slow
def test_stops_at_random_moments_each_end_in_one_line_and_the_study_still_completes(tmp_path: Path) -> None:
    resources = {"cpu": 0.5, "gpu": 0, "max_failures": 1}
    data = {"synthetic": {"levels": [0.5, 1.0], "split": {"train": 16, "val": 4, "test": 4}}}
    study = write_study(tmp_path, "anywhere", epochs=EPOCHS, resources=resources, datasets=data)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ray_tmp = tempfile.mkdtemp(prefix="sa", dir="/tmp")
    moments = random.Random(SEED)
    seen = []
    for attempt in range(STOPS):
        stop = (signal.SIGINT, signal.SIGTERM)[attempt % 2]
        delay = moments.uniform(0, 12)

        def armed_then_delay(pid: int, delay: float = delay) -> None:
            wait_for(lambda: armed(pid), 60, "the driver to arm its handlers", every=0.05)
            time.sleep(delay)

        status, left, output = stop_the_driver(study, tmp_path, ray_tmp, stop.name, armed_then_delay, grace=45)
        assert not left, (seen, f"Ray processes left behind: {left}")
        seen.append((stop.name, round(delay, 1), status))
        if status == 0 and "already finished in MLflow" in output:
            break  # the study ended before the signal: nothing left to stop
        assert status == 128 + stop, (seen, output[-3000:])
        assert "Traceback" not in output and "SystemError" not in output, (seen, output[-3000:])
        last = output.strip().splitlines()[-1]
        assert f"stopped by {stop.name}" in last and "resume with: python -m orchestrator.run" in last, (seen, last)
        running = [run.info.run_name for run in trial_runs(uri, "anywhere") if run.info.status == "RUNNING"]
        assert not running, (seen, running)
        for run in trial_runs(uri, "anywhere"):
            if run.info.status == "KILLED":
                assert run.data.tags[STOP_REASON_TAG].startswith("driver stopped by SIG"), (seen, run.data.tags)

    again = orchestrate(study, tmp_path, env=subprocess_env(RAY_TMPDIR=ray_tmp))
    assert again.returncode == 0, (seen, (again.stdout + again.stderr)[-3000:])
    client = MlflowClient(uri)
    runs = trial_runs(uri, "anywhere")
    assert len(runs) == 4 and {run.info.status for run in runs} == {"FINISHED"}, seen
    for run in runs:
        assert epochs_logged(client, run.info.run_id) == list(range(EPOCHS)), (seen, run.info.run_name)
