"""Training-step time per variant and size in fp32 / bf16, NCHW / channels-last, against this machine's bounds.

    python -m bench.speed                                  # 3 MICCAI variants x 64/128/256 px, all threads
    python -m bench.speed --variants unet --sizes 64 --repeats 3 --steps 1   # a quick look
    python -m bench.speed --orchestrator                   # also the quick study: orchestrator vs in-process loop

For each (variant, image size) one training step (forward, Dice loss, backward, Adam)
on a batch of 8 random images (``--batch``), with the MICCAI model shape (the
``model`` defaults: 5 levels, 16..256 channels), is timed in four settings: fp32, fp32 +
channels_last, bf16 autocast, bf16 + channels_last. The step is
``trainables.loop.train_epoch`` on exactly one batch, the code trials run. Settings are
interleaved (each repeat times every setting once, in turn) and medians are reported.

Columns: ms per step, speed-up over fp32, achieved GFLOP/s (FLOPs of one step counted
with ``torch.utils.flop_counter.FlopCounterMode``) and that as a share of the bf16
matmul bound, measured at the start of the same run (the best of a few large bf16
matmuls; the fp32 bound is printed beside it). ``--orchestrator`` adds the quick
study's wall time through ``python -m orchestrator.run`` against a ``run_trial`` loop
(``bench/sweep_quick.py``). The last line gives the bf16 speed-up of the 256 px U-Net step.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from trainables.config import ModelConfig
from trainables.loop import pick_device, seed_everything, train_epoch
from trainables.models import build_model
from trainables.precision import device_has_native_bf16
from trainables.runtime import RuntimeOptions

SETTINGS = {"fp32": ("fp32", False), "fp32+CL": ("fp32", True), "bf16": ("bf16", False), "bf16+CL": ("bf16", True)}
VARIANTS = ("noskip_unet", "unet", "attention_unet")
SIZES = (64, 128, 256)


@dataclass
class Setup:
    """One model, optimiser and batch for one (variant, size, layout)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    images: torch.Tensor
    masks: torch.Tensor
    generator: torch.Generator


def matmul_bound(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` square ``size`` matmuls in ``dtype``: what the hardware does at best."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)  # warm-up: kernel choice, thread pool
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def make_setup(variant: str, model_config: ModelConfig, size: int, batch: int, channels_last: bool, device) -> Setup:
    """The same seeded model and batch for every setting, in the layout asked for."""
    generator = seed_everything(0)
    model = build_model(variant, model_config, size).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    images = torch.rand(batch, 1, size, size, generator=generator).to(device)
    masks = (images > 0.5).float()
    return Setup(model, torch.optim.Adam(model.parameters(), lr=1e-3), images, masks, generator)


def train_step(setup: Setup, precision: str, channels_last: bool) -> float:
    """Seconds of one training step: ``train_epoch`` over exactly one batch (it ends in a device sync)."""
    runtime = RuntimeOptions(setup.images.device, precision, channels_last)
    started = time.perf_counter()
    train_epoch(
        setup.model,
        setup.optimizer,
        setup.images,
        setup.masks,
        setup.generator,
        runtime,
        batch_size=len(setup.images),
        rotate_prob=0.5,
    )
    return time.perf_counter() - started


def step_flops(setup: Setup) -> int:
    """FLOPs of one fp32 training step (forward and backward), as torch counts them."""
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(setup, "fp32", False)
    return counter.get_total_flops()


def measure(variant: str, size: int, args, model_config: ModelConfig, device, bound: float) -> list[dict]:
    """Median step time of every setting for one (variant, size), settings interleaved."""
    setups = {layout: make_setup(variant, model_config, size, args.batch, layout, device) for layout in (False, True)}
    flops = step_flops(make_setup(variant, model_config, size, args.batch, False, device))
    for name in args.settings:  # warm-up: oneDNN / cuDNN primitives, autocast caches
        precision, layout = SETTINGS[name]
        train_step(setups[layout], precision, layout)
    samples: dict[str, list[float]] = {name: [] for name in args.settings}
    for _ in range(args.repeats):
        for name in args.settings:
            precision, layout = SETTINGS[name]
            seconds = [train_step(setups[layout], precision, layout) for _ in range(args.steps)]
            samples[name].append(sum(seconds) / args.steps)
    medians = {name: statistics.median(times) for name, times in samples.items()}
    baseline = medians.get("fp32", float("nan"))
    return [
        {
            "variant": variant,
            "px": size,
            "setting": name,
            "ms_per_step": 1000 * seconds,
            "speedup_vs_fp32": baseline / seconds,
            "gflops_per_s": flops / seconds / 1e9,
            "pct_of_bf16_matmul_bound": 100 * flops / seconds / 1e9 / bound,
        }
        for name, seconds in medians.items()
    ]


def orchestrator_lines(config: str, concurrent: int) -> list[str]:
    """The quick study through the orchestrator vs a ``run_trial`` loop: ``bench.sweep_quick``'s own lines."""
    from bench import sweep_quick

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        sweep_quick.main(["--config", config, "--concurrent", str(concurrent)])
    return output.getvalue().strip().splitlines()


def bf16_line(table: pd.DataFrame) -> str:
    """The bf16 speed-up of the U-Net step at 256 px (or the largest size measured)."""
    unet = table[(table.variant == "unet") & table.setting.isin(["bf16", "bf16+CL"])]
    if unet.empty or "fp32" not in set(table.setting):
        return "bf16 speed-up of the unet step: not measured (needs --variants unet and the fp32 and bf16 settings)"
    size = 256 if 256 in set(unet.px) else int(unet.px.max())
    best = unet[unet.px == size].sort_values("speedup_vs_fp32").iloc[-1]
    where = f"{size} px" + ("" if size == 256 else " (256 px not measured)")
    return f"bf16 speed-up of the unet {where} training step: {best.speedup_vs_fp32:.2f}x ({best.setting} vs fp32)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="images per step (default 8, the MICCAI batch)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"default: {' '.join(VARIANTS)}")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), help="image sizes (default 64 128 256)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per setting (default 5)")
    parser.add_argument("--steps", type=int, default=3, help="steps averaged per repeat (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when visible, else cpu)")
    parser.add_argument("--out", default=None, help="also write the table as CSV here")
    parser.add_argument("--orchestrator", action="store_true", help="also time the quick study: orchestrator vs loop")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at once in --orchestrator (default 2)")
    parser.add_argument("--study", default="conf/quick.yaml", help="study of --orchestrator (default conf/quick.yaml)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_config = ModelConfig()
    device = pick_device(args.device)
    fp32_bound, bf16_bound = (matmul_bound(dtype, device) for dtype in (torch.float32, torch.bfloat16))
    print(
        f"device {device.type}, {torch.get_num_threads()} threads, native bf16: "
        f"{'yes' if device_has_native_bf16(device) else 'no'}; batch {args.batch}"
    )
    print(f"matmul bound: fp32 {fp32_bound:,.0f} GFLOP/s, bf16 {bf16_bound:,.0f} GFLOP/s")
    rows = []
    for variant in args.variants:
        for size in args.sizes:
            rows += measure(variant, size, args, model_config, device, bf16_bound)
            print(f"  measured {variant} {size} px", flush=True)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    formats = {"ms_per_step": "{:.1f}", "speedup_vs_fp32": "{:.2f}x", "gflops_per_s": "{:.0f}"}
    formats["pct_of_bf16_matmul_bound"] = "{:.1f}%"
    shown = table.copy()
    for column, text in formats.items():
        shown[column] = shown[column].map(text.format)
    print(shown.to_string(index=False))
    if args.orchestrator:
        for line in orchestrator_lines(args.study, args.concurrent):
            print(line)
    print(bf16_line(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
