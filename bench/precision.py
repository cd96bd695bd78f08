"""Does bf16 training change what a study concludes? fp32 vs bf16 trials, Dice against the seed-to-seed spread.

    python -m bench.precision --config conf/quick.yaml --variants unet attention_unet \\
        --levels 0.1 0.9 --seeds 0 1 2 --precisions none bf16 --out bench_precision.csv
    python -m bench.precision --summarise bench_precision.csv

Each trial is ``trainables.trial.run_trial`` in this process (the study's own settings,
only ``training.mixed_precision`` changed; evaluation stays as the study sets it), into a
fresh SQLite store under a temporary folder. Rows are appended to ``--out`` as each trial
ends, so a long run that is stopped keeps what it measured and ``--summarise`` works on it.

The summary compares, per (variant, train alpha) and per test condition (in-domain and each
cross-alpha column), the mean bf16 - fp32 Dice difference with the seed-to-seed standard
deviation of fp32 Dice in the same cell: bf16 "stays inside the spread" when
|mean difference| <= the fp32 standard deviation. Trials of one seed share data and
initial weights across precisions, so each cell also gets a paired test: the two-sided
Wilcoxon signed-rank p of the per-seed bf16 - fp32 differences (``paired_seeds`` of them).
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

FIXED = ("variant", "train_alpha", "seed", "precision", "seconds", "condition", "dice")


def run(args: argparse.Namespace) -> None:
    from trainables.config import load_study
    from trainables.trial import TrialSpec, run_trial

    base = load_study(args.config)
    out = Path(args.out)
    new_file = not out.exists()
    with tempfile.TemporaryDirectory() as folder, out.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(FIXED)
        for variant in args.variants:
            for alpha in args.levels:
                for seed in args.seeds:
                    for precision in args.precisions:
                        study = base.model_copy(
                            update={"training": base.training.model_copy(update={"mixed_precision": precision})}
                        )
                        spec = TrialSpec(base.study, "synthetic", variant, alpha, seed)
                        started = time.perf_counter()
                        result = run_trial(
                            spec,
                            study,
                            work_dir=Path(folder) / f"{spec.trial_id}-{precision}",
                            tracking_uri=f"sqlite:///{folder}/{precision}.db",
                            cache_root=args.cache,
                        )
                        seconds = time.perf_counter() - started
                        for key, value in sorted(result.test_metrics.items()):
                            if key.startswith("test_dice."):
                                condition = key.removeprefix("test_dice.")
                                writer.writerow([variant, alpha, seed, precision, f"{seconds:.1f}", condition, value])
                        handle.flush()
                        in_domain = result.test_metrics.get("test_dice.in_domain", float("nan"))
                        print(
                            f"{variant} a{alpha} s{seed} {precision}: in-domain Dice {in_domain:.4f}, {seconds:.0f} s"
                        )


def summarise(path: str | Path) -> pd.DataFrame:
    """Per (variant, train alpha, condition): fp32 mean and seed std, bf16 mean, their difference, inside the spread?"""
    frame = pd.read_csv(path)
    frame["precision"] = frame["precision"].replace({"none": "fp32"})
    missing = {"fp32", "bf16"} - set(frame["precision"])
    if missing:
        raise SystemExit(
            f"{path}: no {' or '.join(sorted(missing))} trials to compare (run with --precisions none bf16)"
        )
    table = frame.pivot_table(
        index=["variant", "train_alpha", "condition"], columns="precision", values="dice", aggfunc=["mean", "std"]
    )
    rows = pd.DataFrame(
        {
            "fp32_mean": table[("mean", "fp32")],
            "fp32_seed_std": table[("std", "fp32")],
            "bf16_mean": table[("mean", "bf16")],
            "bf16_seed_std": table[("std", "bf16")],
        }
    )
    rows["bf16_minus_fp32"] = rows["bf16_mean"] - rows["fp32_mean"]
    rows["inside_spread"] = rows["bf16_minus_fp32"].abs() <= rows["fp32_seed_std"]
    cells = ["variant", "train_alpha", "condition", "seed"]
    paired = frame.pivot_table(index=cells, columns="precision", values="dice").dropna()
    rows["paired_seeds"] = paired.groupby(level=[0, 1, 2]).size()
    rows["wilcoxon_p"] = paired.groupby(level=[0, 1, 2]).apply(_wilcoxon_p)
    return rows.reset_index()


def _wilcoxon_p(cell: pd.DataFrame) -> float:
    """Two-sided Wilcoxon signed-rank p of bf16 vs fp32 over the seeds run in both (same seed: same data, same init)."""
    from scipy.stats import wilcoxon

    differences = (cell["bf16"] - cell["fp32"]).to_numpy()
    if len(differences) < 2 or not differences.any():
        return float("nan") if len(differences) < 2 else 1.0
    return float(wilcoxon(differences, zero_method="zsplit").pvalue)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/quick.yaml")
    parser.add_argument("--variants", nargs="+", default=["unet", "attention_unet"])
    parser.add_argument("--levels", nargs="+", type=float, default=[0.1, 0.9])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--precisions", nargs="+", default=["none", "bf16"])
    parser.add_argument("--cache", default=".skipsweep_cache")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (Dice depends on it: keep it fixed)")
    parser.add_argument("--out", default="bench_precision.csv")
    parser.add_argument("--summarise", metavar="CSV", help="only summarise an earlier run's CSV")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.summarise:
        import torch

        torch.set_num_threads(args.threads)
        run(args)
    rows = summarise(args.summarise or args.out)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(rows.round(4).to_string(index=False))
    conditions = rows[rows["condition"].str.startswith("alpha_") | (rows["condition"] == "in_domain")]
    inside = int(conditions["inside_spread"].sum())
    print(f"bf16 inside the fp32 seed spread in {inside} of {len(conditions)} (variant, alpha, test alpha) cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
