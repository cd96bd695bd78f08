"""Seconds per training epoch per variant, on this machine's device.

    python -m bench.epoch_times --sizes 64 256 --variants noskip_unet unet attention_unet
    python -m bench.epoch_times --sizes 64 --variants unet --options eager channels_last compile

``--options`` times each throughput option of ``training`` (one column each): ``eager``
(the default path), ``channels_last``, ``compile`` (``torch.compile``, its one-off
compile time printed apart), ``bf16`` / ``fp16`` (autocast; CUDA only).

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
from trainables.loop import compile_with_fallback, grad_scaler, pick_device, seed_everything, train_epoch
from trainables.models import build_model
from trainables.runtime import RuntimeOptions

OPTIONS = ("eager", "channels_last", "compile", "bf16", "fp16")


def epoch_seconds(variant: str, size: int, repeats: int, device: torch.device, option: str = "eager") -> float:
    generator = seed_everything(0)
    model = build_model(variant, ModelConfig(), size).to(device)
    channels_last = option == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(70, 1, size, size, device=device)
    masks = (torch.rand(70, 1, size, size, device=device) > 0.5).float()
    runtime = RuntimeOptions(device, option if option in ("bf16", "fp16") else "fp32", channels_last)
    scaler = grad_scaler(device, runtime.precision)
    network = model
    if option == "compile":
        started = time.perf_counter()
        network, mode = compile_with_fallback(model, images[:8])
        print(f"# {variant} {size}px: torch.compile {mode}, {time.perf_counter() - started:.1f} s", flush=True)

    def epoch() -> float:
        return train_epoch(
            network, optimizer, images, masks, generator, runtime, batch_size=8, rotate_prob=0.5, scaler=scaler
        )

    epoch()  # warm-up (and the compile of the last, smaller batch)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        epoch()
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
    parser.add_argument("--options", nargs="+", default=["eager"], choices=OPTIONS, help="one column per option")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, device {device}"
    )
    columns = [(size, option) for size in args.sizes for option in args.options]
    names = [f"{s}x{s} s/epoch" + ("" if args.options == ["eager"] else f" {o}") for s, o in columns]
    print("| variant | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---:" for _ in columns) + " |")
    for variant in args.variants:
        cells = [f"{epoch_seconds(variant, size, args.repeats, device, option):.3f}" for size, option in columns]
        print(f"| {variant} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
