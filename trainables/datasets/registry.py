"""The one place that knows which data sets exist: every switch on a data set's name is here.

Synthetic data sets (``synthetic``, ``synthetic_background``) are generated from textures;
medical ones (``busi``, ``spleen``, ``heart``, ``glas``) are read from the user's disk in
their published layouts (GlaS in either of two: the one the study names as ``datasets.glas.layout``,
else the one found). The orchestrator, the trial and the data command ask this module:

- :func:`check_data`: the files a study names are there, in their layout, before anything runs;
- :func:`prepare_dataset`: a data set built into the cache, once per machine;
- :func:`prepare_report`: the same, described in a few lines (the data command prints it);
- :func:`trial_data`: the arrays of one trial.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trainables.config import (
    BUILTIN_TEXTURES,
    MEDICAL_DATASETS,
    SYNTHETIC_DATASETS,
    GlasConfig,
    MedicalDatasetConfig,
    StudyConfig,
    StudyConfigError,
    SyntheticConfig,
)
from trainables.config.loading import unset_variable_problem
from trainables.datasets.arrays import TrialData
from trainables.datasets.medical.layouts import (
    Case,
    MedicalDataError,
    busi_cases,
    found_glas_layout,
    glas_cases,
    glas_folder_cases,
    msd_cases,
    read_layout,
)
from trainables.datasets.medical.prepare import medical_report, medical_trial_data, prepare_medical
from trainables.datasets.synthetic.generate import load_texture
from trainables.datasets.synthetic.prepare import prepare_synthetic, synthetic_report, synthetic_trial_data

# How each medical data set lies on disk: its published layouts, by the name a study gives them
# (``datasets.glas.layout``); where there are several, the study's choice or the one found is read.
MEDICAL_LAYOUTS: dict[str, dict[str, Callable[[Path], list[Case]]]] = {
    "busi": {"published": busi_cases},
    "spleen": {"published": msd_cases},
    "heart": {"published": msd_cases},
    "glas": {"official": glas_cases, "train_test_folders": glas_folder_cases},
}


def is_synthetic(name: str) -> bool:
    """Whether data set ``name`` is generated (trained per alpha level) rather than read from disk.

    Raises:
        ValueError: for a name that is no data set.
    """
    if name in SYNTHETIC_DATASETS:
        return True
    if name in MEDICAL_DATASETS:
        return False
    raise ValueError(f"unknown data set '{name}'")


def medical_cases(name: str, path: str | Path, layout: str = "auto") -> list[Case]:
    """The files of medical data set ``name`` in ``path``, in its published layout; none is read but metadata.

    Args:
        name: a medical data set.
        path: its folder.
        layout: a name in :data:`MEDICAL_LAYOUTS` ``[name]``, or "auto": the only one, or for GlaS the
            one ``path`` holds (:func:`~trainables.datasets.medical.layouts.found_glas_layout`).

    Raises:
        MedicalDataError: a missing folder or another layout (naming the path).
    """
    layouts = MEDICAL_LAYOUTS[name]
    if layout == "auto":
        layout = found_glas_layout(Path(path)) if name == "glas" else next(iter(layouts))
    return read_layout(name, path, layouts[layout])


def dataset_cases(name: str, dataset: MedicalDatasetConfig) -> list[Case]:
    """The files of medical data set ``name`` as configured: its folder, and for GlaS its ``layout``."""
    layout = dataset.layout if isinstance(dataset, GlasConfig) else "auto"
    return medical_cases(name, dataset.path, layout)


def study_cases(study: StudyConfig, name: str) -> list[Case]:
    """The files of the study's medical data set ``name``, from the folder the study names."""
    return dataset_cases(name, getattr(study.datasets, name))


def check_data(study: StudyConfig, source: str, *, absent_ok: bool = False) -> list[str]:
    """Every file the study's data sets name is there and usable; run before anything is created.

    Texture files must exist and open as one 2D image with a texture: opaque, its grey levels
    varying; medical folders must hold their data set in its published layout (files are listed,
    only metadata files are read).

    Args:
        study: the study, its paths already expanded by :func:`trainables.config.load_study`.
        source: the study file, named in the error.
        absent_ok: a dry run, which reads no data: a path that names an unset environment variable
            (loaded with ``keep_unset``) or a medical folder that does not exist is not checked but
            returned, one line each, instead of refused. Whatever is there is still checked.

    Returns:
        One line per data path not checked, naming ``source``, the key and why (empty unless ``absent_ok``).

    Raises:
        StudyConfigError: one line naming ``source``, the key and the path.
    """
    unchecked: list[str] = []
    for name in study.datasets.names:
        dataset = getattr(study.datasets, name)
        if is_synthetic(name):
            unchecked += _check_textures(dataset, name, source, absent_ok)
            continue
        try:
            dataset_cases(name, dataset)
        except MedicalDataError as error:
            where = f"{source}: datasets.{name}.path"
            if not absent_ok or Path(dataset.path).exists():
                raise StudyConfigError(f"{where}: {error}") from None
            why = unset_variable_problem(dataset.path) or str(error)  # kept as written when a variable is unset
            unchecked.append(f"{where}: not checked (a real run refuses it): {why}")
    return unchecked


def _check_textures(synthetic: SyntheticConfig, name: str, source: str, absent_ok: bool) -> list[str]:
    unchecked = []
    for key in ("background", "foreground"):
        texture = getattr(synthetic, key)
        if texture in BUILTIN_TEXTURES:
            continue
        where = f"{source}: datasets.{name}.{key}"
        unset = None if Path(texture).exists() else unset_variable_problem(texture)
        if absent_ok and unset is not None:
            unchecked.append(f"{where}: not checked (a real run refuses it): {unset}")
            continue
        if not Path(texture).is_file():
            raise StudyConfigError(
                f"{where}: texture '{texture}' is neither a built-in texture ({', '.join(BUILTIN_TEXTURES)}) "
                "nor an existing image file"
            )
        try:
            load_texture(texture)
        except ValueError as error:
            raise StudyConfigError(f"{where}: {error}") from None
    return unchecked


def prepare_dataset(study: StudyConfig, name: str, cache_root: str | Path) -> Path:
    """Build data set ``name`` of the study into ``cache_root`` (once per machine and content); its folder.

    Raises:
        MedicalDataError: a medical file that cannot be used (the message names it).
        ValueError: ``name`` is not a data set of the study.
    """
    synthetic, view = is_synthetic(name), study.for_dataset(name)
    if synthetic:
        return prepare_synthetic(view, cache_root)
    return prepare_medical(view, name, study_cases(view, name), cache_root)


def prepare_report(study: StudyConfig, name: str, cache_root: str | Path) -> str:
    """Prepare data set ``name`` and describe it in a few lines of text.

    Synthetic: its cache folder and TS per alpha level; medical: patients and slices per split
    and TS per test level.
    """
    synthetic, view = is_synthetic(name), study.for_dataset(name)
    if synthetic:
        return synthetic_report(view, name, cache_root)
    return medical_report(view, name, study_cases(view, name), cache_root)


def trial_data(study: StudyConfig, dataset: str, train_alpha: float | None, cache_root: str | Path) -> TrialData:
    """The arrays of one trial of ``dataset``, trained at ``train_alpha`` (synthetic data sets; None for medical).

    Args:
        study: the study, or its view for ``dataset`` (:meth:`StudyConfig.for_dataset`).
        dataset: a data set of the study.
        train_alpha: the alpha level trained on; None for a medical data set.
        cache_root: the prepared-data cache.
    """
    synthetic, view = is_synthetic(dataset), study.for_dataset(dataset)
    if synthetic:
        if train_alpha is None:
            raise ValueError("a synthetic trial needs a train_alpha")
        return synthetic_trial_data(view, train_alpha, cache_root)
    return medical_trial_data(view, dataset, study_cases(view, dataset), cache_root)
