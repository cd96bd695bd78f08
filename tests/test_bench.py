"""The throughput bench runs end to end at a tiny size and writes the columns it promises (no timing checks)."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT, subprocess_env

from bench.sweep import COLUMNS


@pytest.mark.slow
def test_bench_sweep_runs_reference_and_packed_trials_and_writes_its_tables(tmp_path) -> None:
    out = tmp_path / "bench.csv"
    command = [
        sys.executable,
        "-m",
        "bench.sweep",
        "--config",
        "conf/quick.yaml",
        "--trials",
        "2",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--trials-per-gpu",
        "1",
        "2",
        "--baseline",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
        "--work",
        str(tmp_path / "work"),
    ]
    done = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = pd.read_csv(out)
    assert list(summary.columns) == list(COLUMNS)
    assert list(summary["mode"]) == ["reference", "skipsweep", "skipsweep"]
    assert list(summary["trials_per_gpu"].iloc[1:]) == [1, 2] and math.isnan(summary["trials_per_gpu"].iloc[0])
    assert (summary["trials"] == 2).all()
    for column in ("wall_seconds", "trials_per_hour", "speedup_vs_reference"):
        assert (summary[column] > 0).all() and summary[column].map(math.isfinite).all(), column
    assert summary["speedup_vs_reference"].iloc[0] == 1.0
    assert summary["best_val_dice_mean"].between(0, 1).all()
    assert summary[["gpu_util_mean", "peak_gpu_mem_mb_per_trial"]].isna().all().all()  # no GPU here
    assert summary["device"].str.startswith("cpu").all()

    trials = pd.read_csv(tmp_path / "bench_trials.csv")
    assert list(trials.columns) == ["run_name", "reference", "skipsweep_n1", "skipsweep_n2"]
    assert len(trials) == 2 and trials.drop(columns="run_name").stack().between(0, 1).all()
    assert "best val Dice per trial" in done.stdout


@pytest.mark.slow
def test_tracking_load_on_postgresql_logs_every_epoch_once_across_a_server_restart(tmp_path) -> None:
    from bench.postgres import PostgresUnavailable, postgres_bin

    try:
        postgres_bin()
    except PostgresUnavailable as missing:
        pytest.skip(f"no PostgreSQL here: {missing}")
    out = tmp_path / "load.csv"
    command = [sys.executable, "-m", "bench.tracking_load", "--trials", "2", "--epochs", "6", "--epoch-seconds", "0.5"]
    command += ["--backends", "postgresql", "--workers", "1", "--system-seconds", "1"]  # (SQLite: test_reliability)
    command += ["--fault", "server", "--fault-after", "1", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    rows = pd.read_csv(out)
    assert list(rows["backend"]) == ["postgresql"]
    found = rows.iloc[0]
    # 2 trials x 6 epochs x 3 metrics, read back from the store: none lost, none twice, though the server was
    # killed and started again a second into the epochs
    assert (found["expected"], found["logged"], found["lost"], found["duplicated"]) == (36, 36, 0, 0)
    assert found["failed"] == 0 and found["fault"] == "server", found["errors"]
    assert "fault: restarting the mlflow server at 1 s" in done.stdout
    assert "| postgresql | 2 | 5+10 | server | 36 / 36 | 0 | 0 | 0 |" in done.stdout
