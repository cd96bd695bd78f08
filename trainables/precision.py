"""Which precision and memory layout a trial trains in, resolved from the study and the device it got.

``training.mixed_precision`` (``none``, ``bf16``, ``fp16``, ``auto``) becomes one of
``fp32``, ``bf16``, ``fp16``: the value logged as the run's ``precision`` param.

- ``auto``: bf16 on a CUDA device that supports it and on a CPU with native bf16
  instructions (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm, as torch reports them),
  fp32 elsewhere.
- ``bf16`` runs on any device (emulated, so slow, on a CPU without native bf16).
- ``fp16`` needs CUDA: refused on a CPU, before the trial does any work.

``training.channels_last`` ``auto`` picks channels-last on a CPU (measured faster there in
fp32 and bf16, see bench/RESULTS.md; bf16 reaches the AMX kernels only in it) and on
CUDA with bf16 or fp16, whose tensor-core kernels want it; plain fp32 on CUDA stays NCHW.
"""

from __future__ import annotations

import torch

PRECISIONS = ("fp32", "bf16", "fp16")  # the values of the run param ``precision``
NATIVE_BF16_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")  # torch.cpu.get_capabilities() keys


class PrecisionError(ValueError):
    """A precision that the trial's device cannot run; the message names the study key."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively, by torch's own capability checks."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.9
    if capabilities is not None:
        found = capabilities()
        return any(bool(found.get(feature, False)) for feature in NATIVE_BF16_FEATURES)
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


def device_has_native_bf16(device: torch.device) -> bool:
    """bf16 at full speed on ``device``: a CUDA device that supports it, or a CPU with native bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def precision_fits(precision: str, device_type: str) -> bool:
    """Whether ``precision`` can train on a ``device_type`` device: fp16 needs CUDA, the rest runs anywhere.

    The one place this rule lives: CPU autocast has no fp16 loss scaling, and no fp16 speed.
    ``precision`` may be a resolved one (``fp32``, ``bf16``, ``fp16``) or a study's ``training.mixed_precision``.
    """
    return precision != "fp16" or device_type == "cuda"


def check_precision_fits(mixed_precision: str, device_type: str, reason: str = "") -> None:
    """Refuse a precision the trials' device cannot run (:func:`precision_fits`), naming the study key.

    Args:
        mixed_precision: the study's ``training.mixed_precision``.
        device_type: ``cpu`` or ``cuda``, where the trials run.
        reason: why they run there, for the message.

    Raises:
        PrecisionError: one line naming ``training.mixed_precision``.
    """
    if not precision_fits(mixed_precision, device_type):
        why = f" ({reason})" if reason else ""
        raise PrecisionError(
            f"training.mixed_precision: fp16 needs a CUDA GPU, but the trials run on the {device_type}{why};"
            " use bf16, auto or none"
        )


def resolve_precision(mixed_precision: str, device: torch.device) -> str:
    """The precision a trial trains in on ``device``: ``fp32``, ``bf16`` or ``fp16``.

    Args:
        mixed_precision: the study's ``training.mixed_precision`` (none, bf16, fp16, auto).
        device: the trial's torch device.

    Raises:
        PrecisionError: fp16 on a device other than CUDA.
    """
    check_precision_fits(mixed_precision, device.type)
    if mixed_precision == "auto":
        return "bf16" if device_has_native_bf16(device) else "fp32"
    return {"none": "fp32"}.get(mixed_precision, mixed_precision)


def resolve_channels_last(channels_last: bool | str, device: torch.device, precision: str) -> bool:
    """Whether the trial uses the channels-last layout: as set, or by device and precision for ``auto``."""
    if channels_last != "auto":
        return bool(channels_last)
    return device.type == "cpu" or (device.type == "cuda" and precision != "fp32")
