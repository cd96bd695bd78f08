"""The epochs of one trial: model and optimiser, resume from the saved state, validation, the best weights.

:func:`train_model` is the training half of ``trainables.trial.run_trial``. After each epoch
it logs the epoch to the trial's run, saves the full training state in ``work_dir`` and
then tells the caller (:class:`EpochReport`), so a trial stopped at any point resumes from
its last epoch and logs no epoch twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from trainables.config import StudyConfig
from trainables.loop import (
    TrainState,
    compile_with_fallback,
    grad_scaler,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    to_memory_format,
    to_tensor,
    train_epoch,
    validation_dice,
)
from trainables.models import build_model
from trainables.runtime import RuntimeOptions
from trainables.schema import COMPILED_TAG, EPOCH_SECONDS, RESUMED_TAG, TRAIN_LOSS, VAL_DICE
from trainables.spec import TrialSpec
from trainables.state import STATE_FILE, state_to_resume
from trainables.tracking import TrialRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochReport:
    """What the trial tells its caller after each epoch (the Ray adapter reports it)."""

    epoch: int
    train_loss: float
    val_dice: float | None
    best_val_dice: float
    seconds: float
    checkpoint_dir: Path  # holds STATE_FILE as saved after this epoch
    last: bool  # the trial's final epoch (its data set's ``training.epochs``)


@dataclass
class TrainedModel:
    """A trial's model after its last epoch."""

    model: torch.nn.Module  # weights are saved and loaded through it
    network: torch.nn.Module  # what is called: ``model`` or its compiled version
    best_model: dict | None  # state dict of the best validation epoch (None: no epoch validated better than -1)
    state: TrainState


def train_model(
    spec: TrialSpec,
    config: StudyConfig,
    data,
    run: TrialRun,
    runtime: RuntimeOptions,
    *,
    work_dir: Path,
    resume_from: str | Path | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> TrainedModel:
    """Train the trial's model for the epochs left, resuming from a ``state.pt`` when there is one that loads.

    Args:
        spec: the trial key (variant and seed).
        config: the study as the trial's data set sees it (``StudyConfig.for_dataset``, applied by the caller).
        data: the trial's arrays (``train_images``, ``train_masks``, ``val_images``, ``val_masks``).
        run: the trial's open MLflow run; epochs and resume tags are logged to it.
        runtime: device, precision, layout, prediction batches and threshold.
        work_dir: where ``state.pt`` is saved after every epoch.
        resume_from: a folder holding an older ``state.pt``, used when ``work_dir`` has none that loads (the sweep
            passes Ray Tune's checkpoint); a corrupt one is set aside (:func:`trainables.state.state_to_resume`).
        on_epoch: called after each epoch, once its state is saved.
    """
    training = config.training
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = training.cudnn_benchmark
    generator = seed_everything(spec.seed)
    model = build_model(spec.variant, config.model, config.image_size).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=training.learning_rate)
    scaler = grad_scaler(runtime.device, runtime.precision)
    state, best_model = TrainState(), None
    checkpoint = work_dir / STATE_FILE
    recovered = state_to_resume(work_dir, resume_from)  # a truncated state.pt: resume_from's, else epoch 0
    if recovered:
        run.set_tags({**recovered, RESUMED_TAG: 0})  # epochs already in the run are not logged again
    if checkpoint.is_file():
        state, best_model = load_checkpoint(checkpoint, model, optimizer, generator, scaler)
        log.info("%s: resuming at epoch %d from %s", spec.run_name, state.next_epoch, checkpoint)
        for row in state.history:  # the epochs the store lacks: their batch was still queued when the trial died
            _log_epoch(run, row)
        run.set_tags({RESUMED_TAG: state.next_epoch})  # the latest resume: where the checkpoint took over
    train_x, train_y = to_tensor(data.train_images, runtime.device), to_tensor(data.train_masks, runtime.device)
    val_x, val_y = to_tensor(data.val_images, runtime.device), to_tensor(data.val_masks, runtime.device)
    network = model  # what is called; weights are saved and loaded through ``model``
    if training.compile:
        example = to_memory_format(train_x[: training.batch_size], runtime.channels_last)
        network, mode = compile_with_fallback(model, example, runtime.precision)
        run.set_tags({COMPILED_TAG: str(mode == "compiled").lower()})
    for epoch in range(state.next_epoch, training.epochs):
        started = time.perf_counter()
        loss = train_epoch(
            network,
            optimizer,
            train_x,
            train_y,
            generator,
            runtime,
            batch_size=training.batch_size,
            rotate_prob=training.rotate_prob,
            scaler=scaler,
        )
        last = epoch == training.epochs - 1
        val_dice = None
        if (epoch + 1) % training.val_every == 0 or last:
            val_dice = validation_dice(network, val_x, val_y, runtime)  # fp32: the best epoch is picked on fp32 Dice
            if val_dice > state.best_val_dice:
                state.best_val_dice, state.best_epoch = val_dice, epoch
                best_model = {key: value.detach().clone() for key, value in model.state_dict().items()}
        seconds = time.perf_counter() - started
        state.history.append({"epoch": epoch, "train_loss": loss, "val_dice": val_dice, "seconds": seconds})
        # Queued, not written: the writer thread logs it while the next epoch trains. A crash before it is
        # written leaves the epoch in the saved history, and a resumed trial logs it again (above).
        _log_epoch(run, state.history[-1])
        state.next_epoch = epoch + 1
        save_checkpoint(work_dir / STATE_FILE, model, optimizer, generator, state, best_model, scaler)
        if on_epoch is not None:
            on_epoch(EpochReport(epoch, loss, val_dice, state.best_val_dice, seconds, work_dir, last))
    return TrainedModel(model, network, best_model, state)


def _log_epoch(run: TrialRun, row: dict) -> None:
    """Log one row of the training history as the run's epoch metrics; steps already in the store are skipped."""
    metrics = {TRAIN_LOSS: row["train_loss"], VAL_DICE: row["val_dice"], EPOCH_SECONDS: row["seconds"]}
    run.log_epoch(row["epoch"], metrics)
