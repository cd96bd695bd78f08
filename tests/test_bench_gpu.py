"""``python -m bench.gpu``: one line and no files without CUDA; its tables from hand-made figures; its CSV rows."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from conftest import ROOT
from numpy.testing import assert_allclose

import bench.gpu
from bench.gpu import (
    COLUMNS,
    SKIPPED,
    Budget,
    Packing,
    StepTime,
    measure_steps,
    measurement_table,
    packing_of,
    packing_rows,
    step_rows,
)
from bench.sweep import BenchRun

NO_CUDA_LINE = "bench.gpu: no CUDA device on this machine (torch "

STEPS = [
    StepTime("unet", "fp32", 0.09),
    StepTime("unet", "bf16", 0.045),
    StepTime("unet", "fp16", 0.03),
    StepTime("noskip_unet", "fp32", 0.09),
    StepTime("noskip_unet", "bf16", math.nan, SKIPPED),
    StepTime("noskip_unet", "fp16", 0.06),
]
PACKINGS = [
    Packing(1, "unet", "bf16", 20, 256, 8, 80.0, 35.0, 2100.0, 1500.4, 0.7512),
    Packing(2, "unet", "bf16", 20, 256, 8, 40.0, 70.0, 3600.0, 1499.6, 0.7488),
    Packing(4, "unet", "bf16", 20, 256, 8, note=SKIPPED),
]


@pytest.mark.slow
def test_without_cuda_the_command_prints_one_line_exits_0_and_writes_nothing(tmp_path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no device, even on a GPU machine
    command = [sys.executable, "-m", "bench.gpu", "--out", str(tmp_path / "out" / "gpu.csv")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(NO_CUDA_LINE) and lines[0].endswith("; nothing measured")
    assert list(tmp_path.iterdir()) == []  # no CSV, no .md, no folder, no data cache


def test_main_without_cuda_returns_0_before_measuring(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(bench.gpu, "epoch_seconds", lambda *args: pytest.fail("measured without CUDA"))
    assert bench.gpu.main(["--out", str(tmp_path / "gpu.csv")]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""
    assert printed.out.startswith(f"{NO_CUDA_LINE}{torch.__version__}, ") and printed.out.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_step_rows_give_seconds_milliseconds_and_speedups_over_fp32() -> None:
    assert step_rows(STEPS) == [
        "| variant | fp32 s/epoch | bf16 s/epoch | fp16 s/epoch | fp32 ms/step | bf16 ms/step | fp16 ms/step "
        "| bf16 speed-up | fp16 speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| unet | 0.090 | 0.045 | 0.030 | 10.0 | 5.0 | 3.3 | 2.00x | 3.00x |",
        f"| noskip_unet | 0.090 | {SKIPPED} | 0.060 | 10.0 | {SKIPPED} | 6.7 | n/a | 1.50x |",
    ]


def test_step_rows_without_fp32_have_no_speedup_columns() -> None:
    rows = step_rows([StepTime("unet", "bf16", 0.045)])
    assert rows == ["| variant | bf16 s/epoch | bf16 ms/step |", "| --- | ---: | ---: |", "| unet | 0.045 | 5.0 |"]


def test_packing_rows_give_trials_per_hour_and_the_ratio_to_one_per_gpu() -> None:
    rows = packing_rows(PACKINGS)
    assert rows[0].startswith("| trials per GPU | trials | wall s | trials/hour | vs 1 per GPU | mean GPU util %")
    assert rows[2:] == [
        "| 1 | 8 | 80.0 | 360 | 1.00x | 35 | 2100 | 1500 | 0.751 |",
        "| 2 | 8 | 40.0 | 720 | 2.00x | 70 | 3600 | 1500 | 0.749 |",
        f"| 4 | 8 | {SKIPPED} | {SKIPPED} | n/a | n/a | n/a | n/a | n/a |",
    ]


def test_measurement_table_has_one_row_per_measurement_with_derived_figures() -> None:
    table = measurement_table(STEPS, PACKINGS, "Fake GPU", "9.9.9")
    assert list(table.columns) == list(COLUMNS)
    assert list(table["kind"]) == ["step"] * 6 + ["packing"] * 3
    steps, packed = table[table["kind"] == "step"], table[table["kind"] == "packing"]
    assert_allclose(steps["ms_per_step"], [10.0, 5.0, 10 / 3, 10.0, math.nan, 20 / 3])
    assert_allclose(steps["speedup_vs_fp32"], [1.0, 2.0, 3.0, 1.0, math.nan, 1.5])
    assert (steps["image_size"] == 256).all() and steps["trials_per_gpu"].isna().all()
    assert list(packed["trials_per_gpu"]) == [1, 2, 4]
    assert_allclose(packed["trials_per_hour"], [360.0, 720.0, math.nan])
    assert_allclose(packed["ratio_vs_1_per_gpu"], [1.0, 2.0, math.nan])
    assert list(table["note"].fillna("")) == ["", "", "", "", SKIPPED, "", "", "", SKIPPED]
    assert set(table["device"]) == {"Fake GPU"} and set(table["torch"]) == {"9.9.9"}


def test_packing_of_a_sweep_run_takes_the_largest_peak_and_the_mean_dice() -> None:
    sampler = SimpleNamespace(utilisation_mean=61.5, memory_max=4096.0)
    run = BenchRun("skipsweep", 4, 30.0, sampler, {"a": 0.6, "b": 0.8}, [math.nan, 1200.0, 1500.0])
    packing = packing_of(run, "unet", "bf16", 20, 256)
    assert packing == Packing(4, "unet", "bf16", 20, 256, 2, 30.0, 61.5, 4096.0, 1500.0, 0.7)
    assert_allclose(packing.trials_per_hour, 240.0)


def test_nothing_is_measured_once_the_budget_is_spent(monkeypatch, capsys) -> None:
    monkeypatch.setattr(bench.gpu, "epoch_seconds", lambda *args: pytest.fail("measured past the budget"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    budget = Budget(0.0)
    budget.started -= 1.0
    steps: list[StepTime] = []
    saves = []
    measure_steps(["unet"], ["fp32", "bf16"], 3, budget, steps, lambda: saves.append(len(steps)))
    assert [(s.precision, s.note) for s in steps] == [("fp32", SKIPPED), ("bf16", SKIPPED)]
    assert saves == [1, 2]  # the CSV is rewritten after each measurement
    assert "step unet bf16: not run (budget)\n" in capsys.readouterr().out


def fake_epoch_seconds(variant: str, size: int, repeats: int, device: torch.device, option: str) -> float:
    assert (size, repeats, device.type, torch.backends.cudnn.benchmark) == (256, 2, "cuda", True)
    if option == "fp16":
        raise RuntimeError("CUDA error: no kernel image is available\nmore detail")
    return {"eager": 0.09, "bf16": 0.045}[option] * (2 if variant == "attention_unet" else 1)


def test_main_on_a_faked_gpu_writes_every_measurement_to_the_csv_and_the_md(tmp_path, monkeypatch, capsys) -> None:
    """Only the device is faked: the measuring functions return set figures, the rest runs for real."""
    runs = []

    def fake_run_skipsweep(specs, study, workers, root, cache, device, uri) -> BenchRun:
        runs.append((len(specs), study.training.epochs, list(study.variants), workers, device))
        sampler = SimpleNamespace(utilisation_mean=30.0 * workers, memory_max=1000.0 * workers)
        dice = {spec.run_name: 0.5 for spec in specs}
        return BenchRun("skipsweep", workers, 80.0 / workers, sampler, dice, [700.0] * len(specs))

    prepared = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored after the test
    monkeypatch.setattr(bench.gpu, "epoch_seconds", fake_epoch_seconds)
    monkeypatch.setattr(bench.gpu, "run_skipsweep", fake_run_skipsweep)
    monkeypatch.setattr(bench.gpu, "trial_data", lambda study, dataset, alpha, cache: prepared.append(alpha))
    out = tmp_path / "results" / "gpu.csv"
    argv = ["--variants", "unet", "attention_unet", "--repeats", "2", "--config", str(ROOT / "conf/miccai2023.yaml")]
    argv += ["--trials", "4", "--epochs", "3", "--trials-per-gpu", "1", "2", "--out", str(out)]
    assert bench.gpu.main([*argv, "--work", str(tmp_path / "work")]) == 0

    assert runs == [(4, 3, ["unet"], 1, "cuda"), (4, 3, ["unet"], 2, "cuda")]
    assert prepared == [0.1, 0.1, 0.1, 0.2]  # unet a0.10 s0..s2, a0.20 s0: the study's first four
    table = pd.read_csv(out)
    assert list(table["kind"]) == ["step"] * 6 + ["packing"] * 2
    assert list(table["variant"]) == ["unet"] * 3 + ["attention_unet"] * 3 + ["unet"] * 2
    assert list(table["precision"]) == ["fp32", "bf16", "fp16"] * 2 + ["bf16"] * 2
    assert_allclose(table["seconds_per_epoch"][:6], [0.09, 0.045, math.nan, 0.18, 0.09, math.nan])
    assert_allclose(table["speedup_vs_fp32"][:6], [1.0, 2.0, math.nan, 1.0, 2.0, math.nan])
    assert table["note"][2] == "failed: CUDA error: no kernel image is available"
    packed = table[table["kind"] == "packing"]
    assert list(packed["trials_per_gpu"]) == [1, 2] and list(packed["epochs"]) == [3, 3]
    assert_allclose(packed["trials_per_hour"], [180.0, 360.0])
    assert_allclose(packed["ratio_vs_1_per_gpu"], [1.0, 2.0])
    assert_allclose(packed["gpu_util_mean"], [30.0, 60.0])
    assert_allclose(packed["peak_gpu_mem_mb_per_trial"], [700.0, 700.0])
    assert set(table["device"]) == {"Fake GPU"} and set(table["torch"]) == {torch.__version__}

    markdown = out.with_suffix(".md").read_text()
    assert "| attention_unet | 0.180 | 0.090 | failed: CUDA error: no kernel image is available |" in markdown
    assert "| 2 | 4 | 40.0 | 360 | 2.00x | 60 | 2000 | 700 | 0.500 |" in markdown
    assert "unet on synthetic data, 3 epochs at 256 px in bf16" in markdown
    printed = capsys.readouterr().out
    assert "step attention_unet bf16: 0.090 s/epoch" in printed and "packing 2 per GPU: 360 trials/hour" in printed
    assert markdown in printed


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_tiny_run_on_a_real_gpu_measures_every_row(tmp_path) -> None:
    out = tmp_path / "gpu.csv"
    command = [sys.executable, "-m", "bench.gpu", "--variants", "unet", "--precisions", "fp32", "bf16"]
    command += ["--repeats", "1", "--config", str(ROOT / "conf/miccai2023.yaml"), "--trials", "2", "--epochs", "1"]
    command += ["--trials-per-gpu", "1", "2", "--out", str(out), "--work", str(tmp_path / "work")]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = pd.read_csv(out)
    assert list(table["kind"]) == ["step", "step", "packing", "packing"]
    assert table["note"].isna().all(), table["note"]
    assert (table["seconds_per_epoch"][:2] > 0).all() and (table["trials_per_hour"][2:] > 0).all()
    assert (table["peak_gpu_mem_mb_per_trial"][2:] > 0).all()
    assert table["best_val_dice_mean"][2:].between(0, 1).all()
    assert "| unet | " in out.with_suffix(".md").read_text()
