"""Trials per hour on one device: the reference loop vs skipsweep with 1, 2, 4, 8 trials sharing it.

    python -m bench.sweep --config conf/miccai2023.yaml --datasets synthetic --variants unet --baseline   # a GPU
    python -m bench.sweep --trials 4 --epochs 5 --image-size 64 --trials-per-gpu 1 2 --baseline   # 2 CPU cores

The same first ``--trials`` trials of the study (in ``orchestrator.expand`` order) run
(a) with ``--baseline``: the reference way (``bench/reference.py``): one after another
    in this process, PNG files read through a MONAI DataLoader every epoch, fp32, one
    MLflow call per metric;
(b) through ``trainables.trial.run_trial`` with the study's training options, in N
    worker processes that share the device (what Ray Tune does with ``gpu: 1/N``), for
    each N of ``--trials-per-gpu``; every trial of a row logs to one fresh MLflow store.

Prints and writes (``--out``, CSV) one row per run: trials per hour, the ratio to (a),
GPU utilisation (``nvidia-smi`` sampled every 0.5 s), peak GPU memory per trial
(``torch.cuda.max_memory_allocated`` in each worker) and the mean best val Dice; and a
second CSV (``*_trials.csv``) with each trial's best val Dice in every run, so (a) and
(b) can be compared trial by trial. Wall times include starting the worker processes.
On a machine without a GPU the GPU columns are empty and the default N is ``1 2``.

Needs no Ray and only what mlflow-skinny offers (a file store where SQLAlchemy is missing).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import yaml

from bench.reference import local_tracking_uri, reference_trial, write_trial_files
from orchestrator.expand import expand
from trainables.config import StudyConfig, StudyConfigError, parse_study
from trainables.datasets.registry import trial_data
from trainables.loop import pick_device
from trainables.tracking import ensure_experiment
from trainables.trial import TrialSpec, run_trial

COLUMNS = (
    "mode",
    "trials_per_gpu",
    "trials",
    "wall_seconds",
    "trials_per_hour",
    "speedup_vs_reference",
    "gpu_util_mean",
    "gpu_mem_used_max_mb",
    "peak_gpu_mem_mb_per_trial",
    "best_val_dice_mean",
    "epochs",
    "image_size",
    "device",
)


class GpuSampler:
    """Samples GPU utilisation (%) and memory used (MiB) with ``nvidia-smi`` every ``interval`` seconds."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.available = shutil.which("nvidia-smi") is not None
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        command = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.wait(self.interval):
            try:
                first_gpu = subprocess.run(command, capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
                utilisation, memory = (float(part) for part in first_gpu.split(","))
            except (OSError, subprocess.SubprocessError, IndexError, ValueError):
                continue
            self.samples.append((utilisation, memory))

    @property
    def utilisation_mean(self) -> float:
        return statistics.fmean(s[0] for s in self.samples) if self.samples else math.nan

    @property
    def memory_max(self) -> float:
        return max(s[1] for s in self.samples) if self.samples else math.nan


@dataclass
class BenchRun:
    """One row of the result: a way of running the trials and what it measured."""

    mode: str
    trials_per_gpu: int | None
    wall_seconds: float
    sampler: GpuSampler
    dice: dict[str, float]  # run name -> best val Dice
    peak_mb: list[float] = field(default_factory=list)


def bench_study(
    path: str,
    epochs: int | None = None,
    image_size: int | None = None,
    datasets: list[str] | None = None,
    variants: list[str] | None = None,
) -> StudyConfig:
    """The study file with the bench's overrides, validated.

    ``datasets`` keeps only those data sets, dropped before their folders are looked
    for: ``--datasets synthetic`` runs a study whose medical data are not on this machine.
    ``variants`` replaces the study's list (the canonical order starts with the heaviest,
    ``attention_unet``).
    """
    source = Path(path)
    if not source.is_file():
        raise StudyConfigError(f"{path}: study file not found")
    data = yaml.safe_load(source.read_text())
    if datasets:
        unknown = sorted(set(datasets) - set(data.get("datasets") or {}))
        if unknown:
            raise StudyConfigError(f"{path}: datasets: --datasets {unknown} not in the study")
        data["datasets"] = {name: value for name, value in data["datasets"].items() if name in datasets}
    if variants:
        data["variants"] = variants
    if epochs is not None:
        data.setdefault("training", {})["epochs"] = epochs
    if image_size is not None:
        data["image_size"] = image_size
    return parse_study(data, source=f"{path} (bench overrides)", base=source.resolve().parent)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _worker_trial(job: tuple) -> dict:
    spec, study, uri, cache, work, device = job
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result = run_trial(
        spec, study, work_dir=Path(work) / spec.trial_id, tracking_uri=uri, cache_root=cache, device=device
    )
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else math.nan
    return {"run_name": spec.run_name, "best_val_dice": result.best_val_dice, "peak_mb": peak}


def run_skipsweep(specs: list[TrialSpec], study: StudyConfig, workers: int, root: Path, cache: Path, device: str, uri):
    """(b): the trials through ``run_trial`` in ``workers`` processes sharing the device."""
    uri = uri or local_tracking_uri(root, f"skipsweep_n{workers}")
    row_study = study.model_copy(
        update={"tracking": study.tracking.model_copy(update={"experiment": f"{study.study}-bench-n{workers}"})}
    )
    ensure_experiment(uri, row_study.experiment_name)  # once, before the workers: the SQLite schema race
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [(spec, row_study, uri, str(cache), str(root / f"work_n{workers}"), device) for spec in specs]
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with GpuSampler() as sampler:
        started = time.perf_counter()
        with context.Pool(workers, initializer=_init_worker, initargs=(threads,)) as pool:
            outcomes = list(pool.imap_unordered(_worker_trial, jobs, chunksize=1))
        wall = time.perf_counter() - started
    dice = {outcome["run_name"]: outcome["best_val_dice"] for outcome in outcomes}
    return BenchRun("skipsweep", workers, wall, sampler, dice, [outcome["peak_mb"] for outcome in outcomes])


def run_reference(specs: list[TrialSpec], study: StudyConfig, root: Path, cache: Path, device: str, uri, workers: int):
    """(a): the trials one after another, the reference way, after writing their PNG files.

    Each data set's trials see the study as ``run_trial`` shows it to them (``StudyConfig.for_dataset``:
    its model / training overrides), so both ways train the same protocol.
    """
    views = {name: study.for_dataset(name) for name in {spec.dataset for spec in specs}}
    files = {}
    for spec in specs:
        folder = root / "png" / f"{spec.dataset}_{spec.train_alpha}"
        if folder not in files:
            data = trial_data(views[spec.dataset], spec.dataset, spec.train_alpha, cache)
            files[folder] = write_trial_files(data, folder)
    uri = uri or local_tracking_uri(root, "reference")
    dice = {}
    with GpuSampler() as sampler:
        started = time.perf_counter()
        for spec in specs:
            folder = root / "png" / f"{spec.dataset}_{spec.train_alpha}"
            outcome = reference_trial(spec, views[spec.dataset], files[folder], uri, torch.device(device), workers)
            dice[spec.run_name] = outcome["best_val_dice"]
        wall = time.perf_counter() - started
    return BenchRun("reference", None, wall, sampler, dice)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def result_tables(runs: list[BenchRun], study: StudyConfig, device: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary (one row per run, ``COLUMNS``) and the per-trial best val Dice (one column per run)."""
    reference = next((run for run in runs if run.mode == "reference"), None)
    rows = []
    for run in runs:
        per_hour = len(run.dice) / run.wall_seconds * 3600
        base = len(reference.dice) / reference.wall_seconds * 3600 if reference else math.nan
        peaks = [value for value in run.peak_mb if not math.isnan(value)]
        rows.append(
            {
                "mode": run.mode,
                "trials_per_gpu": run.trials_per_gpu,
                "trials": len(run.dice),
                "wall_seconds": round(run.wall_seconds, 2),
                "trials_per_hour": round(per_hour, 1),
                "speedup_vs_reference": round(per_hour / base, 3) if reference else math.nan,
                "gpu_util_mean": run.sampler.utilisation_mean,
                "gpu_mem_used_max_mb": run.sampler.memory_max,
                "peak_gpu_mem_mb_per_trial": max(peaks) if peaks else math.nan,
                "best_val_dice_mean": statistics.fmean(run.dice.values()),
                "epochs": study.training.epochs,
                "image_size": study.image_size,
                "device": device_name(device),
            }
        )
    summary = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"trials_per_gpu": "Int64"})  # empty for (a)
    names = list(runs[0].dice) if runs else []
    trials = pd.DataFrame({"run_name": sorted(names)})
    for run in runs:
        label = "reference" if run.mode == "reference" else f"skipsweep_n{run.trials_per_gpu}"
        trials[label] = [run.dice.get(name, math.nan) for name in trials["run_name"]]
    return summary, trials


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--config", default="conf/quick.yaml", help="study file (default: conf/quick.yaml)")
    parser.add_argument("--baseline", action="store_true", help="also run (a), the reference loop")
    parser.add_argument("--datasets", nargs="+", default=None, help="keep only these data sets (default: all)")
    parser.add_argument("--variants", nargs="+", default=None, help="replace the study's variants")
    parser.add_argument("--trials", type=int, default=None, help="the first N trials of the study (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    parser.add_argument("--image-size", type=int, default=None, help="override image_size (smaller on CPU)")
    parser.add_argument(
        "--trials-per-gpu",
        type=int,
        nargs="+",
        default=None,
        help="N worker processes per run (default: 1 2 4 8; CPU: 1 2)",
    )
    parser.add_argument("--out", default="bench_sweep.csv", help="summary CSV (default: bench_sweep.csv)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when visible, else cpu)")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow store for every run (default: a fresh local one each)"
    )
    parser.add_argument("--cache", default=None, help="prepared-data cache (default: the study's storage.cache)")
    parser.add_argument("--work", default=None, help="folder for stores, PNGs and checkpoints (default: a temp folder)")
    parser.add_argument("--reference-workers", type=int, default=None, help="DataLoader workers of (a) (CPU 0, GPU 4)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        study = bench_study(args.config, args.epochs, args.image_size, args.datasets, args.variants)
    except StudyConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    device = str(pick_device(args.device))
    on_gpu = device.startswith("cuda")
    packings = args.trials_per_gpu or ([1, 2, 4, 8] if on_gpu else [1, 2])
    if on_gpu and study.resources.gpu > 0 and round(1 / study.resources.gpu) not in packings:
        packings.append(round(1 / study.resources.gpu))  # the study's own packing is always measured
    if any(n < 1 for n in packings):
        print("error: --trials-per-gpu values must be >= 1", file=sys.stderr)
        return 2
    specs = expand(study)[: args.trials]
    cache = Path(args.cache or study.storage.cache).resolve()
    for spec in specs:  # prepare the data before any clock starts
        trial_data(study, spec.dataset, spec.train_alpha, cache)
    root = Path(args.work or tempfile.mkdtemp(prefix="bench-sweep-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    reference_workers = args.reference_workers if args.reference_workers is not None else (4 if on_gpu else 0)
    print(f"{len(specs)} trials of {study.study}, {study.training.epochs} epochs at {study.image_size}px on {device}")
    runs = []
    if args.baseline:
        runs.append(run_reference(specs, study, root, cache, device, args.tracking_uri, reference_workers))
        print(f"(a) reference: {runs[-1].wall_seconds:.1f} s", flush=True)
    for workers in packings:
        runs.append(run_skipsweep(specs, study, workers, root, cache, device, args.tracking_uri))
        print(f"(b) skipsweep, {workers} per device: {runs[-1].wall_seconds:.1f} s", flush=True)
    summary, trials = result_tables(runs, study, device)
    out = Path(args.out)
    summary.to_csv(out, index=False)
    trials_out = out.with_name(f"{out.stem}_trials.csv")
    trials.to_csv(trials_out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.drop(columns=["epochs", "image_size", "device"]).to_string(index=False))
        print("\nbest val Dice per trial")
        print(trials.to_string(index=False, float_format=lambda value: f"{value:.4f}"))
    print(f"\nwrote {out} and {trials_out}; stores and files in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
