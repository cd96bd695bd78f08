"""Medical data sets prepared into the cache (slices, patients, split) and the arrays of one trial."""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.config import MedicalSplitConfig, StudyConfig, VolumeDatasetConfig, stable_hash
from trainables.datasets.arrays import TrialData, input_images, split_manifest
from trainables.datasets.cache import cached_directory
from trainables.datasets.medical.layouts import METADATA_FILES, Case, MedicalDataError
from trainables.datasets.medical.read import picture_slices, volume_slices
from trainables.datasets.perturb import perturbed_conditions
from trainables.datasets.texture import summarise

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when preparation changes what it writes
SPLITS = ("train", "val", "test")


def _split_rng(dataset: str, data_seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([data_seed, zlib.crc32(dataset.encode())]))


def patient_split(
    patients: list[str], shares: MedicalSplitConfig, dataset: str, data_seed: int
) -> dict[str, list[str]]:
    """Patients per split: a pure function of the patient ids, the shares, the data set name and the data seed.

    Validation and test get ``round(share x n)`` patients (at least one each), training the rest.

    Raises:
        MedicalDataError: with fewer patients than a split needs.
    """
    ordered = sorted(set(patients))
    n = len(ordered)
    n_val, n_test = max(1, round(shares.val * n)), max(1, round(shares.test * n))
    if n - n_val - n_test < 1:
        raise MedicalDataError(f"{dataset}: {n} patient(s) with foreground are too few for a train / val / test split")
    shuffled = [ordered[i] for i in _split_rng(dataset, data_seed).permutation(n)]
    n_train = n - n_val - n_test
    parts = {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }
    return {name: sorted(part) for name, part in parts.items()}


def given_split(
    patients: list[str], given: dict[str, str], shares: MedicalSplitConfig, dataset: str, data_seed: int
) -> dict[str, list[str]]:
    """Patients per split where the layout gives training and test (GlaS folders): validation drawn from training.

    Test is the patients ``given`` as "test"; of the n given as "train", ``round(val / (train + val) x n)``
    (at least one) are drawn for validation from the data seed, the rest train. ``shares.test`` is
    not used. A pure function of the patient ids, their given splits, the shares, the name and the seed.

    Args:
        patients: the patients with foreground (repeats are ignored).
        given: patient -> "train" or "test", for every patient.

    Raises:
        MedicalDataError: with no test patient, or too few training patients to draw validation from.
    """
    ordered = sorted(set(patients))
    pool = [patient for patient in ordered if given[patient] == "train"]
    test = [patient for patient in ordered if given[patient] == "test"]
    n_val = max(1, round(shares.val / (shares.train + shares.val) * len(pool)))
    if not test or len(pool) - n_val < 1:
        raise MedicalDataError(
            f"{dataset}: {len(pool)} training and {len(test)} test patient(s) with foreground are too few "
            "for the given train / test split with validation drawn from training"
        )
    drawn = {pool[i] for i in _split_rng(dataset, data_seed).permutation(len(pool))[:n_val]}
    return {"train": [p for p in pool if p not in drawn], "val": sorted(drawn), "test": test}


def medical_cache_key(config: StudyConfig, name: str, cases: list[Case]) -> dict:
    """Everything the prepared data depend on: settings (not the folder's path) and the files' names, sizes, times.

    GlaS's ``layout`` is left out: the files it picks, listed here, are what it changes.
    """
    dataset = getattr(config.datasets, name)
    root = Path(dataset.path)
    files = {path for case in cases for path in (case.image, *case.masks)}
    files |= {root / extra for extra in METADATA_FILES if (root / extra).is_file()}
    listing = []
    for path in sorted(files):
        stat = path.stat()
        listing.append([os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns])
    return {
        "version": CACHE_VERSION,
        "dataset": name,
        "settings": dataset.model_dump(mode="json", exclude={"path", "layout", "model", "training"}),
        "files": stable_hash(listing, length=32),
        "file_count": len(listing),
        "image_size": config.image_size,
        "data_seed": config.data_seed,
    }


def _build(config: StudyConfig, name: str, cases: list[Case], folder: Path) -> None:
    dataset = getattr(config.datasets, name)
    read = volume_slices if isinstance(dataset, VolumeDatasetConfig) else picture_slices
    unit = "volumes" if read is volume_slices else "images"
    ids, patients, images, masks, skipped = [], [], [], [], []
    started, step = time.perf_counter(), max(1, len(cases) // 10)
    for number, case in enumerate(cases, start=1):
        found = read(case, dataset, config.image_size)
        if not found:
            log.warning("%s: %s has no foreground at %d px; skipped", name, case.image, config.image_size)
            skipped.append(case.case_id)
        for slice_id, image, mask in found:
            ids.append(slice_id)
            patients.append(case.patient)
            images.append(np.round(image * 255.0).astype(np.uint8))
            masks.append(mask.astype(np.uint8))
        if number % step == 0 or number == len(cases):
            elapsed = time.perf_counter() - started
            log.info("%s: %d/%d %s read, %d slices (%.0f s)", name, number, len(cases), unit, len(ids), elapsed)
    given = {case.patient: case.given_split for case in cases if case.given_split is not None}
    if given:
        split = given_split(patients, given, dataset.split, name, config.data_seed)
    else:
        split = patient_split(patients, dataset.split, name, config.data_seed)
    np.save(folder / "images.npy", np.stack(images))
    np.save(folder / "masks.npy", np.stack(masks))
    meta = {"dataset": name, "slice_ids": ids, "patients": patients, "split": split, "skipped": skipped}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def prepare_medical(config: StudyConfig, name: str, cases: list[Case], cache_root: str | Path) -> Path:
    """Build (once per machine and content) and return the cache folder of medical data set ``name``.

    ``cases`` are its files, as :func:`trainables.datasets.registry.medical_cases` lists them.

    Raises:
        MedicalDataError: an unreadable file, a mask whose shape differs from its image, or an empty mask
            where the layout requires foreground (GlaS folders).
    """
    if getattr(config.datasets, name, None) is None:
        raise ValueError(f"the study has no data set '{name}'")
    key = medical_cache_key(config, name, cases)
    return cached_directory(cache_root, name, key, lambda folder: _build(config, name, cases, folder))


@dataclass(frozen=True)
class MedicalData:
    """A prepared medical data set, as read from the cache."""

    dataset: str
    images: np.ndarray  # (N, H, W) uint8
    masks: np.ndarray  # (N, H, W) uint8
    slice_ids: tuple[str, ...]
    patients: tuple[str, ...]  # the patient of each slice
    split: dict[str, list[str]]  # "train" / "val" / "test" -> patient ids

    def indices(self, part: str) -> np.ndarray:
        """Slice indices of one split."""
        members = set(self.split[part])
        return np.array([i for i, patient in enumerate(self.patients) if patient in members], dtype=np.int64)


def load_medical(folder: str | Path) -> MedicalData:
    """Read a prepared medical data set."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    return MedicalData(
        dataset=meta["dataset"],
        images=np.load(folder / "images.npy"),
        masks=np.load(folder / "masks.npy"),
        slice_ids=tuple(meta["slice_ids"]),
        patients=tuple(meta["patients"]),
        split=meta["split"],
    )


def medical_trial_data(config: StudyConfig, dataset: str, cases: list[Case], cache_root: str | Path) -> TrialData:
    """Training and validation splits, and the in-domain test split under every test level of the study."""
    data = load_medical(prepare_medical(config, dataset, cases, cache_root))
    index = {part: data.indices(part) for part in SPLITS}
    test = index["test"]
    test_ids = tuple(data.slice_ids[i] for i in test)
    conditions = perturbed_conditions(config, input_images(data.images[test]), data.masks[test], float("nan"), test_ids)
    scaling = config.training.input_scaling
    return TrialData(
        train_images=input_images(data.images[index["train"]], scaling),
        train_masks=data.masks[index["train"]],
        val_images=input_images(data.images[index["val"]], scaling),
        val_masks=data.masks[index["val"]],
        conditions=tuple(conditions),
        manifest=split_manifest(dataset, data.slice_ids, index, patients=data.split),
    )


def medical_report(config: StudyConfig, dataset: str, cases: list[Case], cache_root: str | Path) -> str:
    """Prepare a data set and describe it: patients and slices per split, TS of the test split per test level."""
    folder = prepare_medical(config, dataset, cases, cache_root)
    data = load_medical(folder)
    lines = [f"{dataset}: {len(data.slice_ids)} slices of {len(set(data.patients))} patients in {folder}"]
    lines.append("  split   patients   slices")
    for part in SPLITS:
        lines.append(f"  {part:<7} {len(data.split[part]):>8}   {len(data.indices(part)):>6}")
    trial = medical_trial_data(config, dataset, cases, cache_root)
    lines.append("  test level   TS mean   TS std   (harder levels should have lower TS)")
    for condition in trial.conditions:
        stats = summarise(condition.ts)
        lines.append(f"  {condition.name:<10} {stats['mean']:9.3f}  {stats['std']:7.3f}")
    return "\n".join(lines)
