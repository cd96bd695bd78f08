"""How a trial computes, as one frozen value: device, precision, memory layout, prediction batches, Dice threshold.

The training loop and the evaluation take a :class:`RuntimeOptions` instead of the same
five positional arguments at every call. A trial builds it once from its study
(:meth:`RuntimeOptions.for_training`); tests and benchmarks build it directly:

    from trainables.runtime import RuntimeOptions
    runtime = RuntimeOptions("cpu", precision="bf16", channels_last=True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.config import TrainingConfig
from trainables.precision import PRECISIONS, precision_fits, resolve_channels_last, resolve_precision


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how tensors are computed; nothing here changes what a trial learns beyond rounding.

    Predictions (validation and test) are always fp32, whatever ``precision``: bf16
    inference moves out-of-domain Dice, the quantity a study measures.

    Raises:
        ValueError: a field out of range, naming it (fp16 on a device other than CUDA included).
    """

    device: torch.device  # where the model and its batches live; a string such as "cuda:0" is converted
    precision: str = "fp32"  # forward pass in training: fp32, bf16 or fp16 (trainables.precision resolves "auto")
    channels_last: bool = False  # inputs in channels-last layout (the model must be converted too)
    eval_batch_size: int = 32  # images per forward pass when predicting (validation and test)
    threshold: float = 0.5  # a pixel is foreground where sigmoid(logit) > threshold

    def __post_init__(self) -> None:
        if not isinstance(self.device, torch.device):
            object.__setattr__(self, "device", torch.device(self.device))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got '{self.precision}'")
        if not precision_fits(self.precision, self.device.type):
            raise ValueError(f"precision fp16 needs a CUDA device, not {self.device.type}")
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1), got {self.threshold}")

    @classmethod
    def for_training(cls, training: TrainingConfig, device: torch.device) -> RuntimeOptions:
        """The options of a trial with protocol ``training`` on ``device``: ``auto`` precision and layout resolved.

        Raises:
            PrecisionError: fp16 asked for on a device other than CUDA (the message names the study key).
        """
        precision = resolve_precision(training.mixed_precision, device)
        return cls(
            device,
            precision,
            resolve_channels_last(training.channels_last, device, precision),
            training.eval_batch_size,
            training.dice_threshold,
        )
