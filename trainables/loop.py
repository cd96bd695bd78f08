"""The training loop: in-memory tensors, seeded augmentation, Dice loss, validation Dice.

The loop knows nothing of MLflow or Ray. Every random draw after the model's
initialisation comes from one ``torch.Generator`` whose state is part of the
checkpoint, so a trial stopped after epoch k and resumed gives the same history as
one that ran straight through.
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceLoss

from trainables.files import replacing
from trainables.metrics import dice_scores
from trainables.precision import precision_fits
from trainables.runtime import RuntimeOptions

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return the generator that drives shuffling and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when visible (or as requested), else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W) array -> (N, 1, H, W) float32 tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None].to(device)


def rotate90(images: torch.Tensor, masks: torch.Tensor, prob: float, generator: torch.Generator):
    """Rotate each sample by 90, 180 or 270 degrees with probability ``prob`` (image and mask alike).

    The draws come from ``generator`` on the CPU, two per sample whatever the device,
    so CPU and GPU trials share one random stream. Samples are rotated in one
    ``rot90`` per angle, not one per sample.
    """
    count = images.shape[0]
    apply = torch.rand(count, generator=generator) < prob
    turns = torch.randint(1, 4, (count,), generator=generator)
    if not apply.any():
        return images, masks
    images, masks = images.clone(), masks.clone()
    for k in (1, 2, 3):
        chosen = torch.nonzero(apply & (turns == k)).flatten()
        if len(chosen) == 0:
            continue
        chosen = chosen.to(images.device)
        images[chosen] = torch.rot90(images[chosen], k, dims=(2, 3))
        masks[chosen] = torch.rot90(masks[chosen], k, dims=(2, 3))
    return images, masks


def autocast(device: torch.device, precision: str):
    """Autocast for ``precision``: bf16 on CUDA or CPU, fp16 on CUDA; a no-op for fp32 (or ``none``).

    Raises:
        ValueError: a precision ``device`` cannot run (:func:`trainables.precision.precision_fits`); a trial
            refuses it before it starts.
    """
    if precision in ("none", "fp32"):
        return contextlib.nullcontext()
    if not precision_fits(precision, device.type):
        raise ValueError(f"fp16 autocast needs a CUDA device, not {device.type}")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 training needs; None for fp32 and bf16, which need no scaling."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def to_memory_format(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``images`` in channels-last layout when asked (the model must be converted too)."""
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def batch_bounds(count: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each training batch; a last batch of one image joins the batch before it.

    BatchNorm cannot train on one image ("Expected more than 1 value per channel"):
    17 images in batches of 8 train as 8 and 9, not 8, 8 and 1. Every other layout
    (and ``batch_size`` 1) is left as it is.
    """
    bounds = [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    if batch_size > 1 and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], count)]
    return bounds


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    masks: torch.Tensor,
    generator: torch.Generator,
    runtime: RuntimeOptions,
    *,
    batch_size: int,
    rotate_prob: float,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One pass over the training set in a random order; returns the mean batch loss.

    Args:
        model: the network, on ``runtime.device`` (channels-last when ``runtime.channels_last``).
        optimizer: its optimiser.
        images: (N, 1, H, W) training images on ``runtime.device``.
        masks: (N, 1, H, W) binary masks, same device.
        generator: the CPU generator that draws the order and the rotations.
        runtime: device, forward-pass precision and layout; the loss and the weights stay in fp32.
        batch_size: images per step (a last batch of one joins the one before, see :func:`batch_bounds`).
        rotate_prob: probability of a random 90-degree rotation per image.
        scaler: the fp16 loss scaler (:func:`grad_scaler`); None for fp32 and bf16.

    The losses stay on the device until the end of the epoch: one synchronisation per epoch, not per batch.
    """
    model.train()
    loss_function = DiceLoss(sigmoid=True)
    order = torch.randperm(images.shape[0], generator=generator).to(images.device)
    losses = []
    for start, stop in batch_bounds(len(order), batch_size):
        batch = order[start:stop]
        batch_images, batch_masks = rotate90(images[batch], masks[batch], rotate_prob, generator)
        optimizer.zero_grad(set_to_none=True)
        with autocast(runtime.device, runtime.precision):
            logits = model(to_memory_format(batch_images, runtime.channels_last))
        loss = loss_function(logits.float(), batch_masks)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        losses.append(loss.detach())
    return float(np.mean(torch.stack(losses).cpu().numpy().astype(np.float64)))


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, runtime: RuntimeOptions) -> torch.Tensor:
    """Binary predictions (N, 1, H, W) of ``sigmoid(model(x)) > runtime.threshold``, in fp32.

    ``images`` may lie on the CPU or on ``runtime.device``: they are predicted
    ``runtime.eval_batch_size`` at a time, each batch moved to the device and its
    prediction back to where ``images`` lie, so only one batch is on the device at once.
    Trials predict in fp32 even when they train in bf16: bf16 inference moves
    out-of-domain Dice, the quantity a study measures.
    """
    model.eval()
    outputs = []
    for start in range(0, images.shape[0], runtime.eval_batch_size):
        batch = images[start : start + runtime.eval_batch_size].to(runtime.device)
        logits = model(to_memory_format(batch, runtime.channels_last))
        outputs.append((torch.sigmoid(logits.float()) > runtime.threshold).to(images.device))
    return torch.cat(outputs)


def validation_dice(
    model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, runtime: RuntimeOptions
) -> float:
    """Mean Dice over the validation set (``images`` and ``masks`` on one device), predicted in fp32."""
    return float(dice_scores(predict(model, images, runtime), masks).mean())


@dataclass
class TrainState:
    """Everything a resumed trial needs, saved after every epoch."""

    next_epoch: int = 0
    best_val_dice: float = -1.0
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)  # one row per epoch done: epoch, train_loss, val_dice, seconds


def save_checkpoint(
    path: Path,
    model,
    optimizer,
    generator: torch.Generator,
    state: TrainState,
    best_model: dict | None,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Write the full training state atomically (temp file, then rename: :func:`trainables.files.replacing`)."""
    payload = {
        "model": model.state_dict(),
        "best_model": best_model if best_model is not None else model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "next_epoch": state.next_epoch,
        "best_val_dice": state.best_val_dice,
        "best_epoch": state.best_epoch,
        "history": state.history,
    }
    if scaler is not None:
        payload["grad_scaler"] = scaler.state_dict()
    with replacing(path) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(
    path: Path, model, optimizer, generator: torch.Generator, scaler: torch.amp.GradScaler | None = None
) -> tuple[TrainState, dict]:
    """Restore model, optimiser, generator (and fp16 loss scaler) in place; return the state and the best weights."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    generator.set_state(payload["generator"])
    if scaler is not None and "grad_scaler" in payload:
        scaler.load_state_dict(payload["grad_scaler"])
    state = TrainState(payload["next_epoch"], payload["best_val_dice"], payload["best_epoch"], payload["history"])
    return state, payload["best_model"]


def compile_with_fallback(
    model: torch.nn.Module, example: torch.Tensor, precision: str = "fp32"
) -> tuple[torch.nn.Module, str]:
    """``torch.compile(model)``, tried at once on ``example``; the eager model when anything fails.

    Compilation happens at the first call, so one training step (forward and backward,
    in ``precision``) and one fp32 evaluation pass run here; the weights,
    batch-norm statistics and gradients are put back afterwards, so the trial's results
    do not depend on this warm-up.

    Returns:
        The module to call (the compiled one, or ``model`` itself) and ``"compiled"``
        or ``"eager"``. Save and load weights through ``model``, not the compiled module.
    """
    saved = {key: value.detach().clone() for key, value in model.state_dict().items()}
    try:
        compiled = torch.compile(model)
        compiled.train()
        with autocast(example.device, precision):
            logits = compiled(example)
        logits.float().mean().backward()
        compiled.eval()
        with torch.no_grad():  # trials validate and test in fp32, whatever they train in
            compiled(example)
    except Exception as error:  # any compiler failure: train eagerly rather than not at all
        log.warning("torch.compile failed, training eagerly instead: %s: %s", type(error).__name__, error)
        compiled, mode = model, "eager"
    else:
        mode = "compiled"
    model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    return compiled, mode
