"""Memory a study's data will take, estimated before anything is allocated, against what this machine has.

``image_size: 100000``, ``split.train: 10000000`` or ``texture_similarity.resize_to: 100000``
would otherwise be found out by a ``MemoryError`` (or the OOM killer) halfway through
preparing the data, or in every trial. The estimates follow what the code holds at its
peak (bytes per pixel of each array, see the functions below); they leave out the
network's activations and assume one trial at a time per machine, so they are a floor:
a study refused here cannot run, one accepted may still need more.
"""

from __future__ import annotations

import psutil

from trainables.config import StudyConfig, StudyConfigError
from trainables.datasets.registry import is_synthetic, study_cases

# bytes per image pixel: uint8 mask + float32 background and foreground crops, the blend's float32 temporaries
SYNTHETIC_BASE_BYTES = 1 + 4 + 4 + 12
# bytes per pixel of one image while its texture similarity is computed: float64 image, mask, LBP codes, resizing
TS_BYTES = 40
# bytes per pixel of one medical slice: uint8 image and mask, stacked (a copy), and the trial's float32 copy
MEDICAL_BYTES = 2 + 2 + 4


def format_bytes(count: float) -> str:
    """``count`` bytes in binary units: '512 B', '1.5 GiB', '2.3 PiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} PiB"


def available_memory() -> int:
    """Bytes of memory this machine can give a new process now (psutil's ``available``)."""
    return int(psutil.virtual_memory().available)


def ts_bytes(study: StudyConfig) -> int:
    """Peak bytes of the texture similarity of one image (at ``resize_to`` when set, else at ``image_size``)."""
    side = study.texture_similarity.resize_to or study.image_size
    return TS_BYTES * side * side


def synthetic_bytes(study: StudyConfig) -> int:
    """Peak bytes of the synthetic data set: preparing it (all levels in memory) or one trial's arrays.

    Preparation holds the base arrays and every level twice (the list and the stacked copy).
    A trial holds the cached levels and masks, float32 training and validation images, and
    float32 test images per alpha level and per test level.
    """
    synthetic = study.datasets.synthetic
    pixels, count, levels = study.image_size**2, synthetic.split.total, len(synthetic.levels)
    prepare = pixels * count * (SYNTHETIC_BASE_BYTES + 2 * levels)
    split, conditions = synthetic.split, levels + len(study.test_levels)
    trial = pixels * (count * (levels + 1) + 4 * (split.train + split.val) + 4 * split.test * conditions)
    return max(prepare, trial)


def medical_bytes(study: StudyConfig, name: str) -> int:
    """Bytes of a medical data set, counting one slice per case (volumes have more: a floor).

    The folder's layout has been checked (:func:`trainables.datasets.registry.check_data`).
    """
    return MEDICAL_BYTES * study.image_size**2 * len(study_cases(study, name)) * (1 + len(study.test_levels))


def check_memory(study: StudyConfig, source: str, available: int | None = None) -> None:
    """Each data set's estimated peak memory fits in this machine's available memory.

    Raises:
        StudyConfigError: naming the data set, the keys that set the size, the estimate and what is available.
    """
    available = available_memory() if available is None else available
    for name in study.datasets.names:
        view = study.for_dataset(name)
        data = synthetic_bytes(view) if is_synthetic(name) else medical_bytes(view, name)
        similarity = ts_bytes(view)
        if data + similarity <= available:
            continue
        if similarity > data:
            keys = "texture_similarity.resize_to" if view.texture_similarity.resize_to else "image_size"
            side = view.texture_similarity.resize_to or view.image_size
            what = f"the texture similarity of one image at {side} x {side} px"
        elif not is_synthetic(name):
            keys = "image_size"
            what = f"its slices at {view.image_size} x {view.image_size} px"
        else:
            keys = f"image_size, datasets.{name}.split, datasets.{name}.levels"
            what = (
                f"{view.datasets.synthetic.split.total} images of {view.image_size} x {view.image_size} px "
                f"at {len(view.datasets.synthetic.levels)} alpha levels"
            )
        raise StudyConfigError(
            f"{source}: datasets.{name}: {what} would take about {format_bytes(data + similarity)} of memory, "
            f"more than the {format_bytes(available)} available here ({keys})"
        )
