"""Every network of a study, built once and run on a tiny batch before Ray starts.

A shape that fails inside the network (``strides: [3, 3]`` at 32 px: decoder sizes 11
and 12; batch norm on a 1x1 bottleneck with one image per batch) would otherwise fail
every trial after Ray started and all retries were spent. The networks are built on
PyTorch's ``meta`` device: shapes are checked, nothing is allocated or computed, so
this costs milliseconds per variant even for large images.
"""

from __future__ import annotations

from trainables.config import StudyConfig, StudyConfigError

PROBE_BATCH = 2  # images per probe batch (fewer when batch_size is 1): what training sees at least


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def probe_model(variant: str, study: StudyConfig) -> str | None:
    """Why ``variant`` cannot train on the study's images, or None when a forward pass gives the right shape.

    Args:
        variant: a network variant.
        study: the study as the data set's trials see it (``StudyConfig.for_dataset``).
    """
    import torch  # here, not at the top: only a study that gets this far pays for loading torch

    from trainables.models import build_model  # imports torch too

    size, batch = study.image_size, min(PROBE_BATCH, study.training.batch_size)
    try:
        with torch.device("meta"), torch.no_grad():
            network = build_model(variant, study.model).train()
            shape = tuple(network(torch.empty(batch, 1, size, size)).shape)
    except Exception as error:  # any failure here would fail every trial of the variant
        return _first_line(error)
    if shape != (batch, 1, size, size):
        return f"it returns {list(shape)} for input {[batch, 1, size, size]}"
    return None


def check_models(study: StudyConfig, source: str) -> None:
    """Each (variant, data set) network runs forward on ``image_size`` images in training mode.

    Raises:
        StudyConfigError: naming the ``model`` section (the data set's override where it has one),
            the variant, the image size and the first line of PyTorch's error.
    """
    seen = set()
    for name in study.datasets.names:
        for axes in study.axis_combinations():  # each combination of sweep values: a swept width or batch size too
            _check_view(study, study.for_trial(name, dict(axes)), name, axes, source, seen)


def _check_view(study: StudyConfig, view: StudyConfig, name: str, axes: tuple, source: str, seen: set) -> None:
    """:func:`check_models` for one data set's trials at one combination of sweep values."""
    where = "model" if study.for_dataset(name).model == study.model else f"datasets.{name}.model"
    if axes:
        where = f"{where} (sweep: {', '.join(f'{key} = {value}' for key, value in axes)})"
    for variant in study.variants:
        key = (variant, view.model, view.training.batch_size)
        if key in seen:
            continue
        seen.add(key)
        problem = probe_model(variant, view)
        if problem is not None:
            raise StudyConfigError(
                f"{source}: {where}: {variant} cannot train on {view.image_size} px images (image_size) with "
                f"channels {list(view.model.channels)}, strides {list(view.model.strides)} and batch_size "
                f"{view.training.batch_size}: {problem}"
            )
