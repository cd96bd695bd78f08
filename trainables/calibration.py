"""What one trial's parts take on this device: a training epoch, a validation pass, the test, the set-up.

The measuring half of ``python -m orchestrator.run --dry-run --calibrate``, run in a Ray
worker with the trial's resources (``orchestrator.calibrate``). It runs the code a trial runs
(:func:`trainables.loop.train_epoch`, :func:`~trainables.loop.validation_dice`,
:func:`~trainables.loop.save_checkpoint`, :func:`trainables.evaluate.evaluate_with_predictions`)
on random images of the trial's sizes: content does not change the cost. A few steps stand
for an epoch, a slice of the test images for all of them.

    from trainables.calibration import DataSizes, measure_parts
    parts = measure_parts("unet", study.for_trial("synthetic", {}), DataSizes(70, 10, (20,) * 12, (128, 128)))
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainables.config import StudyConfig
from trainables.datasets.arrays import TestCondition, TrialData
from trainables.evaluate import evaluate_with_predictions
from trainables.loop import (
    TrainState,
    batch_bounds,
    compile_with_fallback,
    grad_scaler,
    pick_device,
    save_checkpoint,
    seed_everything,
    to_memory_format,
    train_epoch,
    validation_dice,
)
from trainables.models import build_model
from trainables.runtime import RuntimeOptions

TIMED_STEPS = 3  # training steps timed for an epoch (after one warm-up step)
TEST_IMAGES = 64  # test images evaluated for the whole test (scaled by the count)


@dataclass(frozen=True)
class DataSizes:
    """How many images a trial trains, validates and tests on, and their shape."""

    train: int
    val: int
    test: tuple[int, ...]  # per test condition
    shape: tuple[int, int]  # (H, W)

    @classmethod
    def of(cls, data: TrialData) -> DataSizes:
        """The sizes of a trial's arrays."""
        shape = tuple(int(side) for side in data.train_images.shape[1:3])
        return cls(len(data.train_images), len(data.val_images), tuple(len(c.images) for c in data.conditions), shape)


def _synchronised(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _random_set(count: int, shape: tuple[int, int], generator: torch.Generator, device: torch.device):
    images = torch.rand(count, 1, *shape, generator=generator).to(device)
    masks = (torch.rand(count, 1, *shape, generator=generator) > 0.5).float().to(device)
    return images, masks


def measure_parts(
    variant: str, config: StudyConfig, sizes: DataSizes, device: str | None = None, threads: int | None = None
) -> dict[str, float | str]:
    """Seconds of one trial's parts on this device, for ``variant`` under ``config`` (a trial's view).

    Returns:
        ``setup`` (model, optimiser, data on the device, ``torch.compile`` when asked), ``epoch``
        (training over ``sizes.train`` images plus the epoch's checkpoint), ``validation``, ``test``
        (every test condition; surface metrics when the study asks), ``steps_per_epoch``, and ``precision``
        (what ``mixed_precision`` resolved to here: fp32, bf16 or fp16) and ``device`` (cpu or cuda: a GPU share
        where CUDA is not usable trains on the CPU, as a trial would).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    training = config.training
    runtime = RuntimeOptions.for_training(training, pick_device(device))
    started = _synchronised(runtime.device)
    generator = seed_everything(0)
    model = build_model(variant, config.model, config.image_size).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=training.learning_rate)
    scaler = grad_scaler(runtime.device, runtime.precision)
    bounds = batch_bounds(sizes.train, training.batch_size)
    timed = min(TIMED_STEPS, len(bounds))
    stop = bounds[timed - 1][1]  # the first ``timed`` batches, as the epoch batches them
    train_x, train_y = _random_set(stop, sizes.shape, generator, runtime.device)
    val_x, val_y = _random_set(sizes.val, sizes.shape, generator, runtime.device)
    network = model
    if training.compile:
        example = to_memory_format(train_x[: training.batch_size], runtime.channels_last)
        network, _ = compile_with_fallback(model, example, runtime.precision)
    setup = _synchronised(runtime.device) - started

    def steps(count: int) -> None:
        end = bounds[count - 1][1]
        train_epoch(
            network,
            optimizer,
            train_x[:end],
            train_y[:end],
            generator,
            runtime,
            batch_size=training.batch_size,
            rotate_prob=training.rotate_prob,
            scaler=scaler,
        )

    steps(1)  # warm-up: first-call allocations, cuDNN's choice of kernels
    started = _synchronised(runtime.device)
    steps(timed)
    per_step = (_synchronised(runtime.device) - started) / timed
    with tempfile.TemporaryDirectory() as folder:
        best = {key: value.detach().clone() for key, value in model.state_dict().items()}
        started = time.perf_counter()
        save_checkpoint(Path(folder) / "state.pt", model, optimizer, generator, TrainState(), best, scaler)
        checkpoint = time.perf_counter() - started
    validation_dice(network, val_x[:1], val_y[:1], runtime)  # warm-up of the evaluation path
    started = _synchronised(runtime.device)
    validation_dice(network, val_x, val_y, runtime)
    validation = _synchronised(runtime.device) - started
    return {
        "setup": setup,
        "epoch": per_step * len(bounds) + checkpoint,
        "validation": validation,
        "test": _test_seconds(network, config, sizes, runtime),
        "steps_per_epoch": float(len(bounds)),
        "precision": runtime.precision,
        "device": runtime.device.type,
    }


def _test_seconds(network: torch.nn.Module, config: StudyConfig, sizes: DataSizes, runtime: RuntimeOptions) -> float:
    """Seconds of the final evaluation over every test image, from at most :data:`TEST_IMAGES` of them."""
    total = sum(sizes.test)
    if total == 0:
        return 0.0
    count = min(total, TEST_IMAGES)
    rng = np.random.default_rng(0)
    rows, columns = np.ogrid[: sizes.shape[0], : sizes.shape[1]]
    disc = (rows - sizes.shape[0] / 2) ** 2 + (columns - sizes.shape[1] / 2) ** 2 < (min(sizes.shape) / 4) ** 2
    condition = TestCondition(  # a disc as the mask: surface metrics cost what they cost on a real outline
        "calibration",
        float("nan"),
        rng.random((count, *sizes.shape), dtype=np.float32),
        np.repeat(disc[None].astype(np.uint8), count, axis=0),
        np.zeros(count),
        tuple(str(index) for index in range(count)),
    )
    started = _synchronised(runtime.device)
    evaluate_with_predictions(network, (condition,), config.evaluation, runtime)
    return (_synchronised(runtime.device) - started) * total / count
