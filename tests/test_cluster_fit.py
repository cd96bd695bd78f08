"""Trials larger than the local cluster are refused before anything is prepared, created or started."""

from __future__ import annotations

import os
from pathlib import Path

from sweeps import write_study

from orchestrator.run import main


def test_resources_cpu_beyond_the_local_cluster_is_refused_before_data_store_or_ray(tmp_path: Path, capsys) -> None:
    study = write_study(tmp_path, "toobig", epochs=1, resources={"cpu": 64, "gpu": 0})
    folders = ["--storage", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    status = main(["--config", str(study), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", *folders])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(error) == 1, error
    cpus = len(os.sched_getaffinity(0))
    assert error[0] == (
        f"error: {study}: resources.cpu: 64 CPUs per trial, but the largest node of the Ray cluster has {cpus}: "
        "no trial could start"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["toobig.yaml"]  # no cache, store or results
