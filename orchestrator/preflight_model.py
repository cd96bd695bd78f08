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
            network = build_model(variant, study.model, size).train()
            shape = tuple(network(torch.empty(batch, 1, size, size)).shape)
    except Exception as error:  # any failure here would fail every trial of the variant
        return _first_line(error)
    if shape != (batch, 1, size, size):
        return f"it returns {list(shape)} for input {[batch, 1, size, size]}"
    return None


def check_models(study: StudyConfig, source: str) -> None:
    """Each (variant, data set) network runs forward on ``image_size`` images in training mode.

    Checked at each combination of sweep values (a swept width or batch size too), with each variant's
    tuned values, and at each value the tuning stage may try (``tune.space``: its choices, a range's ends).

    Raises:
        StudyConfigError: naming the ``model`` section (the data set's override where it has one),
            the variant, the image size and the first line of PyTorch's error.
    """
    seen: set = set()
    assignments = [{"sweep": dict(axes)} for axes in study.axis_combinations()]
    if study.tune is not None:
        space = study.tune.space.items()
        assignments += [{"tune.space": {key: value}} for key, search in space for value in search.extremes()]
    for name in study.datasets.names:
        for variant in study.variants:
            for fields in assignments:
                fields = {**fields, "tuned": study.tuned_values(variant, name)}
                _check_variant(study, variant, name, fields, source, seen)


def _check_variant(
    study: StudyConfig, variant: str, name: str, fields: dict[str, dict], source: str, seen: set
) -> None:
    """:func:`check_models` for one variant on one data set with study fields set (by origin: sweep, tuned...)."""
    view = study.for_trial(name, {key: value for values in fields.values() for key, value in values.items()})
    where = "model" if study.for_dataset(name).model == study.model else f"datasets.{name}.model"
    said = [
        f"{origin}: {', '.join(f'{k} = {v}' for k, v in values.items())}" for origin, values in fields.items() if values
    ]
    if said:
        where = f"{where} ({'; '.join(said)})"
    key = (variant, view.model, view.training.batch_size)
    if key in seen:
        return
    seen.add(key)
    problem = probe_model(variant, view)
    if problem is not None:
        raise StudyConfigError(
            f"{source}: {where}: {variant} cannot train on {view.image_size} px images (image_size) with "
            f"channels {list(view.model.channels)}, strides {list(view.model.strides)} and batch_size "
            f"{view.training.batch_size}: {problem}"
        )
