"""The fractional-GPU path on a real local Ray cluster that declares a GPU it does not have (``--num-gpus``).

No GPU exists here: what is tested is Ray's scheduling of fractional shares and what each trial records of its
share. Concurrency is read from the runs' start and end times, never from a timed assertion.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from conftest import LOOPBACK_HEAD, LOOPBACK_WORKER, free_port, kill_group, start_ray_node
from mlflow import MlflowClient
from sweeps import orchestrate, trial_runs, write_study

from trainables.schema import FORECAST_TAG, GPU_UNUSABLE_TAG


@pytest.mark.slow
def test_quarter_gpu_trials_go_to_the_gpu_node_share_its_gpu_at_once_and_record_their_share(tmp_path: Path) -> None:
    epochs = 6  # long enough that the four overlap once all have started
    study = write_study(tmp_path, "quarters", epochs=epochs, resources={"cpu": 0.5, "gpu": 0.25, "max_failures": 0})
    port = free_port()
    nodes = [  # a CPU-only head and a worker that declares one GPU
        start_ray_node(
            tempfile.mkdtemp(prefix="gq", dir="/tmp"), num_cpus=1, head_port=port, dashboard_port=free_port()
        )
    ]
    try:
        address = f"{LOOPBACK_HEAD}:{port}"
        worker = tempfile.mkdtemp(prefix="gw", dir="/tmp")
        nodes.append(start_ray_node(worker, num_cpus=2, num_gpus=1, address=address))  # declares one GPU
        calibrated = orchestrate(study, tmp_path, "--address", address, "--dry-run", "--calibrate")
        result = orchestrate(study, tmp_path, "--address", address)
        again = orchestrate(study, tmp_path, "--address", address, "--dry-run", "--calibrate")
    finally:
        for node in nodes:
            kill_group(node)
    assert calibrated.returncode == 0, (calibrated.stdout + calibrated.stderr)[-3000:]
    forecast = json.loads((tmp_path / "results" / "quarters" / "forecast.json").read_text())
    # measured through Ray with the trials' share: 4 workers at 0.25 GPU fit only the worker (2 CPUs / 0.5)
    assert (
        "calibrating 2 kind(s) of trial on 2 nodes (2 CPU, 1 GPU; 1 CPU) (0.5 CPU and 0.25 GPU each)"
        in calibrated.stdout
    )
    assert "4 worker(s) started" in calibrated.stdout
    # the first kind is measured again once Ray has settled, and the lower of its two measurements is kept
    measured = [line.strip() for line in calibrated.stdout.splitlines() if " s an epoch " in line]
    assert len(measured) == 3 and "(the first again, now that Ray has settled)" in calibrated.stdout
    first, second = (float(line.split(": ")[1].split(" s an epoch")[0]) for line in (measured[0], measured[2]))
    assert measured[0].split(" in ")[0] == measured[2].split(" in ")[0]  # the same kind of trial
    variant = measured[0].split(" on ")[0]
    assert (forecast["parallel"], forecast["gpu"], forecast["binding"]) == (4, 0.25, "CPUs and GPUs")
    assert "4 at once on 2 nodes (2 CPU, 1 GPU; 1 CPU), training on cpu" in forecast["assumptions"]  # no CUDA here
    assert round(forecast["per_variant"][variant]["parts"]["epoch"], 2) in (first, second)
    for entry in forecast["per_variant"].values():
        parts = entry["parts"]
        assert entry["trials"] == 2 and parts["epochs"] == epochs and parts["validations"] == 3
        assert all(parts[name] > 0 for name in ("epoch", "validation", "test", "startup"))
        assert entry["seconds_per_trial"] == pytest.approx(
            parts["setup"] + epochs * parts["epoch"] + 3 * parts["validation"] + parts["test"]
        )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "running on CPU instead" not in result.stdout + result.stderr  # the cluster has a GPU: it was asked for
    experiment = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_experiment_by_name("quarters")
    assert json.loads(experiment.tags[FORECAST_TAG]) == forecast  # the run keeps the forecast for its report
    # calibrated again once every trial has finished: nothing left to forecast, the saved forecast kept
    assert again.returncode == 0 and "every trial has finished in MLflow: nothing to forecast" in again.stdout
    assert json.loads((tmp_path / "results" / "quarters" / "forecast.json").read_text()) == forecast
    runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "quarters")
    assert len(runs) == 4 and {run.info.status for run in runs} == {"FINISHED"}
    latest_start = max(run.info.start_time for run in runs)
    earliest_end = min(run.info.end_time for run in runs)
    assert latest_start < earliest_end, "the four 0.25-GPU trials never ran at the same time"
    for run in runs:
        params, tags = run.data.params, run.data.tags
        assert (params["resources.gpu"], params["resources.cpu"], params["cuda_devices"]) == ("0.25", "0.5", "0")
        assert params["device"] == "cpu"  # the declared GPU is not there: CUDA is not usable, so the CPU trained it
        assert tags["ray.node_ip"] == LOOPBACK_WORKER  # the only node with a GPU, though the head had a free CPU
        assert "CUDA is not usable there: trained on the CPU" in tags[GPU_UNUSABLE_TAG]


def test_require_gpu_refuses_a_cluster_without_gpus_and_fails_a_trial_where_cuda_is_not_usable() -> None:
    from orchestrator.driver import _gpu_fraction
    from orchestrator.sweep import _unusable_gpu
    from trainables.config import StudyConfigError

    assert _gpu_fraction(0.25, {"CPU": 2.0, "GPU": 1.0}, required=True) == 0.25
    with pytest.warns(UserWarning, match="running on CPU instead"):
        assert _gpu_fraction(0.25, {"CPU": 2.0}) == 0.0
    with pytest.raises(StudyConfigError, match=r"s.yaml: resources.require_gpu: the Ray cluster has no GPU"):
        _gpu_fraction(0.25, {"CPU": 2.0}, required=True, source="s.yaml")
    assert _unusable_gpu(0.0, required=True) == {}  # asked no GPU: nothing to say
    assert "trained on the CPU" in _unusable_gpu(0.25)[GPU_UNUSABLE_TAG]  # this machine has no CUDA
    with pytest.raises(RuntimeError, match=r"resources.require_gpu: given 0.25 GPU .* CUDA is not usable there"):
        _unusable_gpu(0.25, required=True)
