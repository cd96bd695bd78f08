"""The training loop: in-memory tensors, seeded augmentation, Dice loss, validation Dice.

The loop knows nothing of MLflow or Ray. Every random draw after the model's
initialisation comes from one ``torch.Generator`` whose state is part of the
checkpoint, so a trial stopped after epoch k and resumed gives the same history as
one that ran straight through.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceLoss

from trainables.metrics import dice_scores


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
    """Rotate each sample by 90, 180 or 270 degrees with probability ``prob`` (image and mask alike)."""
    count = images.shape[0]
    apply = torch.rand(count, generator=generator) < prob
    turns = torch.randint(1, 4, (count,), generator=generator)
    if not apply.any():
        return images, masks
    images, masks = images.clone(), masks.clone()
    for index in torch.nonzero(apply).flatten().tolist():
        k = int(turns[index])
        images[index] = torch.rot90(images[index], k, dims=(1, 2))
        masks[index] = torch.rot90(masks[index], k, dims=(1, 2))
    return images, masks


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int,
    rotate_prob: float,
    generator: torch.Generator,
    mixed_precision: bool = False,
) -> float:
    """One pass over the training set in a random order; returns the mean batch loss."""
    model.train()
    loss_function = DiceLoss(sigmoid=True)
    order = torch.randperm(images.shape[0], generator=generator)
    losses = []
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size].to(images.device)
        batch_images, batch_masks = rotate90(images[batch], masks[batch], rotate_prob, generator)
        optimizer.zero_grad(set_to_none=True)
        with autocast(images.device, mixed_precision):
            logits = model(batch_images)
        loss = loss_function(logits.float(), batch_masks)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


@torch.no_grad()
def predict(
    model: torch.nn.Module, images: torch.Tensor, batch_size: int, threshold: float, mixed_precision: bool = False
) -> torch.Tensor:
    """Binary predictions (N, 1, H, W) of ``sigmoid(model(x)) > threshold``."""
    model.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        with autocast(images.device, mixed_precision):
            logits = model(images[start : start + batch_size])
        outputs.append(torch.sigmoid(logits.float()) > threshold)
    return torch.cat(outputs)


def validation_dice(
    model, images: torch.Tensor, masks: torch.Tensor, batch_size: int, threshold: float, mixed_precision: bool = False
) -> float:
    """Mean Dice over the validation set."""
    prediction = predict(model, images, batch_size, threshold, mixed_precision)
    return float(dice_scores(prediction, masks).mean())


@dataclass
class TrainState:
    """Everything a resumed trial needs, saved after every epoch."""

    next_epoch: int = 0
    best_val_dice: float = -1.0
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)  # one row per epoch done: epoch, train_loss, val_dice, seconds


def save_checkpoint(
    path: Path, model, optimizer, generator: torch.Generator, state: TrainState, best_model: dict | None
) -> None:
    """Write the full training state atomically (temp file, then rename)."""
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
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path, model, optimizer, generator: torch.Generator) -> tuple[TrainState, dict]:
    """Restore model, optimiser and generator in place; return the state and the best model's weights."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    generator.set_state(payload["generator"])
    state = TrainState(payload["next_epoch"], payload["best_val_dice"], payload["best_epoch"], payload["history"])
    return state, payload["best_model"]
