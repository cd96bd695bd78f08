"""Seconds per training epoch per variant, on this machine's device.

    python -m bench.epoch_times --sizes 64 256 --variants noskip_unet unet attention_unet

70 training images (the protocol's), batch size 8, the study's default model shape,
one warm-up epoch then the median of ``--repeats`` timed epochs. Content does not
change the cost, so the images are random.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from trainables.config import VARIANTS, ModelConfig
from trainables.loop import pick_device, seed_everything, train_epoch
from trainables.models import build_model


def epoch_seconds(variant: str, size: int, repeats: int, device: torch.device) -> float:
    generator = seed_everything(0)
    model = build_model(variant, ModelConfig()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(70, 1, size, size, device=device)
    masks = (torch.rand(70, 1, size, size, device=device) > 0.5).float()
    train_epoch(model, optimizer, images, masks, 8, 0.5, generator)  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        train_epoch(model, optimizer, images, masks, 8, 0.5, generator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.epoch_times")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, device {device}"
    )
    print("| variant | " + " | ".join(f"{s}x{s} s/epoch" for s in args.sizes) + " |")
    print("| --- | " + " | ".join("---:" for _ in args.sizes) + " |")
    for variant in args.variants:
        cells = [f"{epoch_seconds(variant, size, args.repeats, device):.2f}" for size in args.sizes]
        print(f"| {variant} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
