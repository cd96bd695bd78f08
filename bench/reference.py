"""The reference way to run a trial: PNG files read through a MONAI DataLoader every epoch, fp32, one trial at a time.

This is how the released code trains, and the baseline (a) of ``python -m bench.sweep --baseline``:

- the trial's images live as PNG files (written once here, before any clock starts);
- each epoch a MONAI ``Dataset`` reads them again through a ``DataLoader`` and applies
  ``RandRotate90d`` (probability ``rotate_prob``, 90/180/270 degrees);
- fp32, the same model (``trainables.models.build_model``), Adam, Dice loss on sigmoid
  outputs, validation Dice every ``val_every`` epochs, the best weights tested;
- one ``mlflow.log_metric`` call per metric per epoch, into its own store.

Test images are stored as 8-bit PNGs like everything else, so perturbed (speckle)
test images are quantised; training and validation images are 8-bit already and
are read back exactly. Random draws are seeded but differ from skipsweep's stream,
so its Dice matches skipsweep's within seed noise, not bit for bit.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import mlflow
import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.losses import DiceLoss
from monai.transforms import Compose, RandRotate90d
from PIL import Image

from trainables.config import StudyConfig
from trainables.datasets.arrays import TrialData
from trainables.loop import seed_everything
from trainables.metrics import dice_scores
from trainables.models import build_model
from trainables.trial import TrialSpec

KEYS = ("image", "mask")


def local_tracking_uri(folder: str | Path, name: str) -> str:
    """A fresh local MLflow store in ``folder``: SQLite where SQLAlchemy is installed, else a file store.

    mlflow-skinny (GPU images often have only that) has no SQLAlchemy, and MLflow 3 accepts
    a file store only with ``MLFLOW_ALLOW_FILE_STORE=true``, which this sets for the process.
    """
    folder = Path(folder).resolve()
    if importlib.util.find_spec("sqlalchemy") is not None:
        return f"sqlite:///{folder}/{name}.db"
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return (folder / f"{name}_mlruns").as_uri()


def _write_set(images: np.ndarray, masks: np.ndarray, folder: Path) -> list[dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for index, (image, mask) in enumerate(zip(images, masks, strict=True)):
        image_path, mask_path = folder / f"{index:04d}.png", folder / f"{index:04d}_mask.png"
        Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(image_path)
        Image.fromarray((mask > 0).astype(np.uint8) * 255).save(mask_path)
        items.append({"image": str(image_path), "mask": str(mask_path)})
    return items


def write_trial_files(data: TrialData, folder: str | Path) -> dict[str, list[dict[str, str]]]:
    """Write a trial's training, validation and test images as PNG files; return the file lists by set.

    Returns:
        ``{"train": [...], "val": [...], "test/<condition>": [...]}``, each item ``{"image": path, "mask": path}``.
    """
    folder = Path(folder)
    files = {
        "train": _write_set(data.train_images, data.train_masks, folder / "train"),
        "val": _write_set(data.val_images, data.val_masks, folder / "val"),
    }
    for condition in data.conditions:
        files[f"test/{condition.name}"] = _write_set(
            condition.images, condition.masks, folder / "test" / condition.name
        )
    return files


class ReadPng:
    """Load an item's image and mask from their PNG files as (1, H, W) float32: image in [0, 1], mask 0/1."""

    def __call__(self, item: dict[str, str]) -> dict[str, np.ndarray]:
        image = np.asarray(Image.open(item["image"]), dtype=np.float32)[None] / 255.0
        mask = (np.asarray(Image.open(item["mask"])) > 0).astype(np.float32)[None]
        return {"image": image, "mask": mask}


def _loader(files: list[dict[str, str]], batch_size: int, workers: int, transform, shuffle: bool, seed: int):
    generator = torch.Generator().manual_seed(seed)
    dataset = Dataset(files, transform=transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=generator)


@torch.no_grad()
def _dice(model, loader, device: torch.device, threshold: float) -> float:
    model.eval()
    scores = []
    for batch in loader:
        prediction = torch.sigmoid(model(batch["image"].to(device))) > threshold
        scores.append(dice_scores(prediction, batch["mask"].to(device)).cpu())
    return float(torch.cat(scores).mean())


def reference_trial(
    spec: TrialSpec,
    config: StudyConfig,
    files: dict[str, list[dict[str, str]]],
    tracking_uri: str,
    device: torch.device,
    workers: int = 0,
) -> dict:
    """Train, validate and test one trial the reference way; return its best val Dice and seconds.

    Args:
        spec: the trial key (variant and seed matter here).
        config: the study (model shape, training protocol).
        files: from :func:`write_trial_files`.
        tracking_uri: the reference's own MLflow store.
        device: torch device.
        workers: DataLoader worker processes (0 = read in the training process).
    """
    started = time.perf_counter()
    training = config.training
    seed_everything(spec.seed)
    model = build_model(spec.variant, config.model, config.image_size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=training.learning_rate)
    loss_function = DiceLoss(sigmoid=True)
    augment = Compose([ReadPng(), RandRotate90d(keys=KEYS, prob=training.rotate_prob, max_k=3)])
    augment.set_random_state(seed=spec.seed)
    train = _loader(files["train"], training.batch_size, workers, augment, True, spec.seed)
    val = _loader(files["val"], training.batch_size, workers, ReadPng(), False, spec.seed)
    best_dice, best_state = -1.0, None
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"{config.study}-reference")
    with mlflow.start_run(run_name=spec.run_name):
        mlflow.log_params({"variant": spec.variant, "seed": spec.seed, "learning_rate": training.learning_rate})
        for epoch in range(training.epochs):
            epoch_started = time.perf_counter()
            model.train()
            losses = []
            for batch in train:
                optimizer.zero_grad()
                loss = loss_function(model(batch["image"].to(device)), batch["mask"].to(device))
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            mlflow.log_metric("train_loss", float(np.mean(losses)), step=epoch)
            if (epoch + 1) % training.val_every == 0 or epoch == training.epochs - 1:
                val_dice = _dice(model, val, device, training.dice_threshold)
                mlflow.log_metric("val_dice", val_dice, step=epoch)
                if val_dice > best_dice:
                    best_dice = val_dice
                    best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
            mlflow.log_metric("epoch_seconds", time.perf_counter() - epoch_started, step=epoch)
        model.load_state_dict(best_state)
        for name, items in files.items():
            if name.startswith("test/"):
                loader = _loader(items, training.batch_size, workers, ReadPng(), False, spec.seed)
                mlflow.log_metric(f"test_dice.{name[5:]}", _dice(model, loader, device, training.dice_threshold))
        mlflow.log_metric("best_val_dice", best_dice)
    return {"best_val_dice": best_dice, "seconds": time.perf_counter() - started}
