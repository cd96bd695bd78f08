"""The runtime options of a trial: validated at construction, resolved from the study, shared by loop and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from trial_studies import small_study

from trainables import precision as precision_module
from trainables.config import TrainingConfig, parse_study
from trainables.evaluate import predict_images
from trainables.loop import predict, validation_dice
from trainables.runtime import RuntimeOptions
from trainables.trial import TrialSpec, run_trial

CPU = torch.device("cpu")


class Logit(torch.nn.Module):
    """A "network" whose output is its input: predictions are ``x > logit(threshold)``, by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"precision": "none"}, "precision must be one of"),
        ({"precision": "fp16"}, "precision fp16 needs a CUDA device, not cpu"),
        ({"eval_batch_size": 0}, "eval_batch_size must be >= 1"),
        ({"threshold": 1.0}, r"threshold must lie in \(0, 1\)"),
    ],
)
def test_bad_options_are_refused_naming_the_field(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        RuntimeOptions(CPU, **fields)


def test_a_device_name_becomes_a_device_and_the_value_is_frozen() -> None:
    runtime = RuntimeOptions("cpu")
    assert runtime.device == CPU and runtime.precision == "fp32"
    with pytest.raises(AttributeError):
        runtime.threshold = 0.9


@pytest.mark.parametrize(("native", "precision", "channels_last"), [(True, "bf16", True), (False, "fp32", True)])
def test_options_for_training_resolve_auto_and_take_batch_and_threshold(
    monkeypatch, native, precision, channels_last
) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    training = TrainingConfig(
        mixed_precision="auto", channels_last="auto", batch_size=4, dice_threshold=0.3, evaluation_batch_size=None
    )
    assert RuntimeOptions.for_training(training, CPU) == RuntimeOptions(CPU, precision, channels_last, 16, 0.3)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_predictions_are_thresholded_in_batches_and_stay_where_the_images_are(batch) -> None:
    images = torch.tensor([-2.0, -0.1, 0.1, 2.0, 0.0]).reshape(5, 1, 1, 1)
    runtime = RuntimeOptions(CPU, eval_batch_size=batch, threshold=0.5)  # sigmoid(x) > 0.5 <=> x > 0
    prediction = predict(Logit(), images, runtime)
    assert prediction.device == images.device and prediction.dtype == torch.bool
    assert prediction.flatten().tolist() == [False, False, True, True, False]
    masks = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]).reshape(5, 1, 1, 1)
    assert validation_dice(Logit(), images, masks, runtime) == pytest.approx((1 + 1 + 1 + 0 + 1) / 5)


def test_image_sets_are_predicted_as_one_stream_and_split_back() -> None:
    sets = [np.full((2, 1, 1), 1.0, dtype=np.float32), np.full((1, 1, 1), -1.0, dtype=np.float32)]
    first, second = predict_images(sets, Logit(), RuntimeOptions(CPU, eval_batch_size=2))
    assert first.shape == (2, 1, 1, 1) and second.shape == (1, 1, 1, 1)
    assert first.all() and not second.any()


def test_only_the_final_epoch_is_reported_as_last(tmp_path: Path) -> None:
    reports = []
    spec = TrialSpec("last", "synthetic", "unet", 1.0, 0)
    run_trial(
        spec,
        parse_study(small_study("last", training={"epochs": 3})),
        work_dir=tmp_path / "w",
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        cache_root=tmp_path / "cache",
        on_epoch=reports.append,
        device="cpu",
    )
    assert [(report.epoch, report.last) for report in reports] == [(0, False), (1, False), (2, True)]
