"""Does a variant learn the easiest task? One trial per variant at alpha 1.0 (the foreground texture alone inside the
mask), trained with the real trial code (``trainables.trial.run_trial``, no Ray), its best validation Dice and its
test Dice printed beside the time it took.

    python -m bench.learns_easiest --variants unet udtransnet --size 32 --epochs 40

A check of a new variant's wiring (it must learn what every other variant learns), not a benchmark: 32 training,
8 validation and 8 test images of the grass/brick textures, batch size 8, learning rate 1e-3, validated every
epoch, seed 0, fp32; MLflow and the prepared data go to a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from trainables.config import VARIANTS, parse_study
from trainables.spec import TrialSpec


def study(variants: list[str], size: int, epochs: int):
    return parse_study(
        {
            "study": "learns_easiest",
            "variants": variants,
            "seeds": [0],
            "image_size": size,
            "model": {"channels": [8, 16, 32, 64, 128], "strides": [2, 2, 2, 2]},
            "datasets": {
                "synthetic": {"levels": [1.0], "crop_size": size, "split": {"train": 32, "val": 8, "test": 8}}
            },
            "texture_similarity": {"lbp_method": "uniform"},
            "training": {"epochs": epochs, "batch_size": 8, "val_every": 1, "learning_rate": 1e-3},
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.learns_easiest", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["unet", "udtransnet"], choices=VARIANTS)
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (divisible by 16)")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    from trainables.trial import run_trial  # torch and MONAI: after --help

    config = study(args.variants, args.size, args.epochs)
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'variant':<16} {'best val Dice':>13} {'at epoch':>8} {'test Dice':>9} {'seconds':>8}")
        for variant in args.variants:
            started = time.perf_counter()
            spec = TrialSpec(config.study, "synthetic", variant, 1.0, 0)
            result = run_trial(
                spec,
                config,
                work_dir=Path(folder) / variant,
                tracking_uri=f"sqlite:///{folder}/mlflow.db",
                cache_root=Path(folder) / "cache",
            )
            test = result.test_metrics["test_dice.alpha_1.00"]
            seconds = time.perf_counter() - started
            print(f"{variant:<16} {result.best_val_dice:>13.3f} {result.best_epoch:>8} {test:>9.3f} {seconds:>8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
