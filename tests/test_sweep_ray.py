"""The sweep on real Ray: a local cluster started by the orchestrator, and `ray job submit` to a head."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, ROOT, subprocess_env
from mlflow.tracking import MlflowClient
from sweeps import orchestrate, trial_runs, write_study

from orchestrator.driver import pending_trials
from orchestrator.expand import expand
from trainables.config import load_study
from trainables.schema import RESUMED_TAG, STATE_RECOVERED_TAG

pytestmark = pytest.mark.slow

EPOCHS = 4
KILLED_TRIAL_RUN = Path(__file__).parent / "run_with_a_killed_trial.py"  # the main command, one trial SIGKILLed


def test_local_sweep_with_a_killed_trial_finishes_every_trial_once(tmp_path: Path) -> None:
    study = write_study(tmp_path, "local")
    marker = tmp_path / "killed"
    # the killed trial also leaves its state.pt truncated: the retry sets it aside and resumes from Tune's checkpoint
    killer = (str(KILLED_TRIAL_RUN), "--kill-at-epoch", "1", "--kill-marker", str(marker), "--truncate-state", "--")
    result = orchestrate(study, tmp_path, "--checkpoint-every", "1", entry=killer)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert marker.exists(), "the test hook did not kill a trial"
    assert output.count("has no GPU: running on CPU instead") == 1
    assert "database is locked" not in output

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runs = trial_runs(uri, "local")
    assert len(runs) == 4
    assert len({run.data.tags["skipsweep.trial_id"] for run in runs}) == 4
    client = MlflowClient(uri)
    for run in runs:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(EPOCHS)), (run.info.run_name, steps)
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_dice")) == [1, 3]
        assert "test_dice.alpha_0.50" in run.data.metrics and "test_dice.alpha_1.00" in run.data.metrics
        params = run.data.params  # the share Ray gave it: the cluster has no GPU, so none was asked for
        assert (params["resources.cpu"], params["resources.gpu"], params["cuda_devices"]) == ("0.5", "0", "none")
        assert params["device"] == "cpu"
    (killed,) = [run for run in runs if STATE_RECOVERED_TAG in run.data.tags]
    assert "did not load" in killed.data.tags[STATE_RECOVERED_TAG]
    assert killed.data.tags[RESUMED_TAG] == "2"  # from Tune's checkpoint of epoch 1, not from epoch 0

    again = orchestrate(study, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "4 already finished in MLflow, 0 to run" in again.stdout
    assert len(trial_runs(uri, "local")) == 4

    more_seeds = load_study(write_study(tmp_path, "local", seeds=(0, 1)))
    pending = pending_trials(expand(more_seeds), uri, "local")
    assert sorted(spec.run_name for spec in pending) == sorted(
        f"{v} a{a} s1 synthetic" for v in ("noskip_unet", "unet") for a in ("0.50", "1.00")
    )


def test_ray_job_submit_to_a_started_head(tmp_path: Path, ray_head: dict) -> None:
    study = write_study(tmp_path, "submitted", epochs=2)
    command = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        ray_head["dashboard"],
        "--working-dir",
        str(ROOT),
        "--runtime-env-json",  # settings through the job's runtime env: the driver must not send them again
        json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}}),
        "--",
        "python",
        "-m",
        "orchestrator.run",
        "--config",
        str(study),
        "--storage",
        str(tmp_path / "results"),
        "--cache",
        str(tmp_path / "cache"),
    ]
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=480)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "succeeded" in output
    runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "submitted")
    assert sorted(run.info.run_name for run in runs) == sorted(
        f"{v} a{a} s0 synthetic" for v in ("noskip_unet", "unet") for a in ("0.50", "1.00")
    )
    assert all(run.info.status == "FINISHED" and "best_val_dice" in run.data.metrics for run in runs)
