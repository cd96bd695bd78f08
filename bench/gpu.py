"""The GPU figures in one command: step time per variant and precision, and trials per hour per packing.

    python -m bench.gpu                                   # ~10 min on one H100; writes bench/gpu_<date>.csv and .md
    python -m bench.gpu --variants unet --precisions fp32 bf16 --trials-per-gpu 1 4   # a shorter look
    python -m bench.gpu --trials 16 --epochs 40 --budget-minutes 25   # steadier packing figures, given the time

It composes the other benches rather than timing anything itself:

1. Step time at 256 px: ``bench.epoch_times.epoch_seconds`` per variant (``--variants``,
   default the MICCAI three) in fp32, bf16 and fp16 autocast (``--precisions``): 70 random
   images, batch 8 (9 steps per epoch), NCHW, cuDNN benchmark as the study sets it (on),
   one warm-up epoch, median of ``--repeats``.
2. Packing: ``bench.sweep.run_skipsweep`` on the first ``--trials`` trials of the study
   (default ``conf/miccai2023.yaml``, synthetic data, ``--packing-variant unet``,
   ``--epochs 20``) with 1, 2, 4 and 8 trials sharing the GPU: trials per hour, its ratio to
   1 per GPU, mean GPU utilisation and the most GPU memory used (``nvidia-smi`` every 0.5 s,
   whole GPU), and the peak memory a trial allocated. The trials train with the study's own
   options (``mixed_precision: auto`` is bf16 on a GPU that has it).

Time: a measurement starts only while ``--budget-minutes`` (default 8) have not passed, so the
command ends about one measurement later; the skipped ones are marked ``not run (budget)``.
The defaults (8 trials of 20 epochs, 3 repeats) are sized to fit that on one H100: an
estimate from the CPU figures, not yet timed on a GPU. 8 trials give every worker of the
8-per-GPU run one trial.

Writes ``--out`` (CSV, one row per measurement, rewritten after each one) and beside it a
``.md`` with the Markdown table rows for README.md and bench/RESULTS.md, also printed at the
end. Without a CUDA device it prints one line and exits 0, measuring and writing nothing.
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from bench.epoch_times import epoch_seconds
from bench.sweep import BenchRun, bench_study, run_skipsweep
from orchestrator.expand import expand
from trainables.config import MICCAI_VARIANTS, VARIANTS, StudyConfig, StudyConfigError
from trainables.datasets.registry import trial_data
from trainables.loop import batch_bounds
from trainables.precision import PRECISIONS, resolve_precision

IMAGE_SIZE = 256  # px, the MICCAI protocol's
STEPS_PER_EPOCH = len(batch_bounds(70, 8))  # bench.epoch_times trains 70 images in batches of 8: 9 steps
EPOCH_TIMES_OPTION = {"fp32": "eager", "bf16": "bf16", "fp16": "fp16"}  # precision -> bench.epoch_times option
COLUMNS = (
    "kind",
    "variant",
    "precision",
    "trials_per_gpu",
    "trials",
    "epochs",
    "image_size",
    "seconds_per_epoch",
    "ms_per_step",
    "speedup_vs_fp32",
    "wall_seconds",
    "trials_per_hour",
    "ratio_vs_1_per_gpu",
    "gpu_util_mean",
    "gpu_mem_used_max_mb",
    "peak_gpu_mem_mb_per_trial",
    "best_val_dice_mean",
    "note",
    "device",
    "torch",
)
SKIPPED = "not run (budget)"
Saver = Callable[[], None]  # writes the CSV of the measurements so far


@dataclass(frozen=True)
class StepTime:
    """One variant's training epoch at 256 px in one precision."""

    variant: str
    precision: str  # fp32, bf16 or fp16 (autocast)
    seconds_per_epoch: float  # median of the timed epochs; NaN where not run
    note: str = ""  # why it is NaN: SKIPPED or the error


@dataclass(frozen=True)
class Packing:
    """One run of the short study with ``trials_per_gpu`` trials sharing the GPU."""

    trials_per_gpu: int
    variant: str
    precision: str  # what the trials trained in
    epochs: int
    image_size: int
    trials: int = 0  # in the run (planned, where it did not run)
    wall_seconds: float = math.nan  # worker start-up included
    gpu_util_mean: float = math.nan  # %, nvidia-smi, whole GPU
    gpu_mem_used_max_mb: float = math.nan  # MiB, nvidia-smi, whole GPU (this process's context included)
    peak_gpu_mem_mb_per_trial: float = math.nan  # MiB, the largest torch.cuda.max_memory_allocated of a trial
    best_val_dice_mean: float = math.nan
    note: str = ""

    @property
    def trials_per_hour(self) -> float:
        return self.trials / self.wall_seconds * 3600 if self.trials else math.nan


def packing_of(run: BenchRun, variant: str, precision: str, epochs: int, image_size: int) -> Packing:
    """The figures of one ``bench.sweep`` run."""
    peaks = [value for value in run.peak_mb if not math.isnan(value)]
    return Packing(
        run.trials_per_gpu or 1,
        variant,
        precision,
        epochs,
        image_size,
        len(run.dice),
        run.wall_seconds,
        run.sampler.utilisation_mean,
        run.sampler.memory_max,
        max(peaks) if peaks else math.nan,
        statistics.fmean(run.dice.values()) if run.dice else math.nan,
    )


def speedup(steps: list[StepTime], step: StepTime) -> float:
    """fp32 seconds over ``step``'s seconds, same variant; NaN without an fp32 figure."""
    fp32 = next((s.seconds_per_epoch for s in steps if s.variant == step.variant and s.precision == "fp32"), math.nan)
    return fp32 / step.seconds_per_epoch


def ratio_to_one(packings: list[Packing], packing: Packing) -> float:
    """Trials per hour over those with 1 trial per GPU; NaN without that row."""
    one = next((p.trials_per_hour for p in packings if p.trials_per_gpu == 1), math.nan)
    return packing.trials_per_hour / one


def measurement_table(steps: list[StepTime], packings: list[Packing], device: str, torch_version: str) -> pd.DataFrame:
    """The CSV: one row per measurement, ``COLUMNS``, derived figures computed here."""
    rows = []
    for step in steps:
        rows.append(
            {
                "kind": "step",
                **asdict(step),
                "image_size": IMAGE_SIZE,
                "ms_per_step": step.seconds_per_epoch / STEPS_PER_EPOCH * 1000,
                "speedup_vs_fp32": speedup(steps, step),
            }
        )
    for packing in packings:
        rows.append(
            {
                "kind": "packing",
                **asdict(packing),
                "trials_per_hour": packing.trials_per_hour,
                "ratio_vs_1_per_gpu": ratio_to_one(packings, packing),
            }
        )
    table = pd.DataFrame(rows, columns=list(COLUMNS)).assign(device=device, torch=torch_version)
    return table.astype({"trials_per_gpu": "Int64", "trials": "Int64", "epochs": "Int64", "image_size": "Int64"})


def cell(value: float, digits: int, note: str = "", suffix: str = "") -> str:
    """``value`` rounded for a table; the note (or n/a) where it is NaN."""
    return (note or "n/a") if math.isnan(value) else f"{value:.{digits}f}{suffix}"


def step_rows(steps: list[StepTime]) -> list[str]:
    """Markdown table: a row per variant, s/epoch and ms/step per precision, then the speed-ups over fp32."""
    precisions = list(dict.fromkeys(step.precision for step in steps))
    faster = [p for p in precisions if p != "fp32"] if "fp32" in precisions else []
    names = [f"{p} s/epoch" for p in precisions] + [f"{p} ms/step" for p in precisions]
    lines = ["| variant | " + " | ".join([*names, *(f"{p} speed-up" for p in faster)]) + " |"]
    lines.append("| --- |" + " ---: |" * (len(names) + len(faster)))
    for variant in dict.fromkeys(step.variant for step in steps):
        found = {step.precision: step for step in steps if step.variant == variant}
        row = [found.get(p, StepTime(variant, p, math.nan)) for p in precisions]
        cells = [cell(step.seconds_per_epoch, 3, step.note) for step in row]
        cells += [cell(step.seconds_per_epoch / STEPS_PER_EPOCH * 1000, 1, step.note) for step in row]
        cells += [cell(speedup(steps, step), 2, suffix="x") for step in row if step.precision in faster]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def packing_rows(packings: list[Packing]) -> list[str]:
    """Markdown table: a row per trials-per-GPU value."""
    lines = [
        "| trials per GPU | trials | wall s | trials/hour | vs 1 per GPU | mean GPU util % "
        "| GPU memory used, max MiB | peak MiB per trial | mean best val Dice |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in packings:
        cells = [
            str(p.trials),
            cell(p.wall_seconds, 1, p.note),
            cell(p.trials_per_hour, 0, p.note),
            cell(ratio_to_one(packings, p), 2, suffix="x"),
            cell(p.gpu_util_mean, 0),
            cell(p.gpu_mem_used_max_mb, 0),
            cell(p.peak_gpu_mem_mb_per_trial, 0),
            cell(p.best_val_dice_mean, 3),
        ]
        lines.append(f"| {p.trials_per_gpu} | " + " | ".join(cells) + " |")
    return lines


def markdown(steps: list[StepTime], packings: list[Packing], device: str, torch_version: str, repeats: int) -> str:
    """The text of the ``.md`` file: a line on the machine and each table under a line saying what it is."""
    parts = [f"Device: {device}, torch {torch_version}, {datetime.date.today().isoformat()} (`python -m bench.gpu`)."]
    if steps:
        parts.append(
            f"Training step at {IMAGE_SIZE} px (70 images, batch 8: {STEPS_PER_EPOCH} steps per epoch, NCHW), "
            f"median of {repeats} timed epochs after a warm-up:\n\n" + "\n".join(step_rows(steps))
        )
    if packings:
        first = packings[0]
        parts.append(
            f"Trials per hour, {first.variant} on synthetic data, {first.epochs} epochs at {first.image_size} px in "
            f"{first.precision}, N trials sharing the GPU (wall time includes starting the workers):\n\n"
            + "\n".join(packing_rows(packings))
        )
    return "\n\n".join(parts) + "\n"


class Budget:
    """The clock of one bench run: progress lines stamped with the time spent, and whether the budget is gone."""

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60
        self.started = time.monotonic()

    def spent(self) -> bool:
        return time.monotonic() - self.started > self.seconds

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.0f} s] {text}", flush=True)


def first_line(error: BaseException) -> str:
    return f"failed: {(str(error).splitlines() or [type(error).__name__])[0]}"


def measure_steps(
    variants: list[str], precisions: list[str], repeats: int, budget: Budget, steps: list[StepTime], save: Saver
) -> None:
    """Appends a :class:`StepTime` per (variant, precision) to ``steps``, calling ``save`` after each."""
    device = torch.device("cuda")
    for variant in variants:
        for precision in precisions:
            if budget.spent():
                steps.append(StepTime(variant, precision, math.nan, SKIPPED))
            else:
                try:
                    seconds = epoch_seconds(variant, IMAGE_SIZE, repeats, device, EPOCH_TIMES_OPTION[precision])
                    steps.append(StepTime(variant, precision, seconds))
                except RuntimeError as error:  # out of memory, or a precision this GPU lacks
                    steps.append(StepTime(variant, precision, math.nan, first_line(error)))
            save()
            last = steps[-1]
            budget.log(f"step {variant} {precision}: {cell(last.seconds_per_epoch, 3, last.note, ' s/epoch')}")
    torch.cuda.empty_cache()  # the packing runs' memory readings should not include this process's cache


def measure_packing(
    study: StudyConfig,
    trials: int,
    per_gpu: list[int],
    work: str | None,
    budget: Budget,
    packings: list[Packing],
    save: Saver,
) -> None:
    """Appends a :class:`Packing` per trials-per-GPU value to ``packings``, calling ``save`` after each."""
    specs = expand(study)[:trials]
    cache = Path(study.storage.cache).resolve()
    for spec in specs:  # prepare the data before any clock starts
        trial_data(study, spec.dataset, spec.train_alpha, cache)
    root = Path(work or tempfile.mkdtemp(prefix="bench-gpu-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    variant, epochs = study.variants[0], study.training.epochs
    precision = resolve_precision(study.training.mixed_precision, torch.device("cuda"))  # what the trials train in
    figures = (variant, precision, epochs, study.image_size)
    budget.log(f"packing: {len(specs)} {variant} trials of {study.study}, {epochs} epochs; data ready, work in {root}")
    for workers in per_gpu:
        if budget.spent():
            packings.append(Packing(workers, *figures, len(specs), note=SKIPPED))
        else:
            try:
                run = run_skipsweep(specs, study, workers, root, cache, "cuda", None)
                packings.append(packing_of(run, *figures))
            except RuntimeError as error:  # a worker out of GPU memory
                packings.append(Packing(workers, *figures, len(specs), note=first_line(error)))
        save()
        last = packings[-1]
        budget.log(
            f"packing {workers} per GPU: {cell(last.trials_per_hour, 0, last.note, ' trials/hour')}, "
            f"GPU util {cell(last.gpu_util_mean, 0)}%, peak {cell(last.peak_gpu_mem_mb_per_trial, 0)} MiB/trial"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.strip().splitlines()[0])
    variants = ", ".join(VARIANTS)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(MICCAI_VARIANTS),
        choices=VARIANTS,
        metavar="VARIANT",
        help=f"step times of these ({variants}; default: the MICCAI three)",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=list(PRECISIONS),
        choices=PRECISIONS,
        help="step-time precisions (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per step figure (default: 3)")
    parser.add_argument(
        "--config", default="conf/miccai2023.yaml", help="packing study, synthetic data (default: %(default)s)"
    )
    parser.add_argument(
        "--packing-variant",
        default="unet",
        choices=VARIANTS,
        metavar="VARIANT",
        help="packing trials' variant (default: unet)",
    )
    parser.add_argument("--trials", type=int, default=8, help="the study's first N trials per run (default: 8)")
    parser.add_argument("--epochs", type=int, default=20, help="override training.epochs (default: 20)")
    parser.add_argument(
        "--trials-per-gpu", type=int, nargs="+", default=[1, 2, 4, 8], metavar="N", help="default: 1 2 4 8"
    )
    parser.add_argument(
        "--budget-minutes", type=float, default=8.0, help="start no measurement after this (default: 8)"
    )
    default_out = Path(__file__).resolve().parent / f"gpu_{datetime.date.today().isoformat()}.csv"
    parser.add_argument("--out", type=Path, default=default_out, help="CSV (default: bench/gpu_<date>.csv)")
    parser.add_argument("--work", default=None, help="folder for the runs' stores (default: a temp folder)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.trials < 1 or args.epochs < 1 or min(args.trials_per_gpu) < 1:
        parser.error("--repeats, --trials, --epochs and --trials-per-gpu must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        build = "cpu build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build, no device visible"
        print(f"bench.gpu: no CUDA device on this machine (torch {torch.__version__}, {build}); nothing measured")
        return 0
    try:
        study = bench_study(args.config, args.epochs, None, ["synthetic"], [args.packing_variant])
    except StudyConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    budget = Budget(args.budget_minutes)
    name, version = torch.cuda.get_device_name(torch.device("cuda")), torch.__version__
    steps: list[StepTime] = []
    packings: list[Packing] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        measurement_table(steps, packings, name, version).to_csv(args.out, index=False)

    budget.log(f"{name}, torch {version}; no measurement starts after {args.budget_minutes:g} min")
    torch.backends.cudnn.benchmark = study.training.cudnn_benchmark  # step times as the trials run (default on)
    measure_steps(args.variants, args.precisions, args.repeats, budget, steps, save)
    measure_packing(study, args.trials, args.trials_per_gpu, args.work, budget, packings, save)
    text = markdown(steps, packings, name, version, args.repeats)
    args.out.with_suffix(".md").write_text(text)
    print(f"\n{text}\nwrote {args.out} and {args.out.with_suffix('.md')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
