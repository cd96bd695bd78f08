"""Medical data sets from the user's disk, in their published layouts, prepared once into 2D slices.

    python -m trainables.data prepare --config conf/example_medical_tiny.yaml

Nothing is downloaded: a study names the folder where a data set already lies
(``datasets.<name>.path``) and :func:`check_layout` checks it when the study loads.

- busi: ``benign/``, ``malignant/`` with ``X.png`` + ``X_mask.png`` (+ ``X_mask_1.png``, unioned);
  ``normal/`` is excluded. One 2D image per image.
- spleen, heart (Medical Segmentation Decathlon): ``dataset.json`` whose "training" list names
  the NIfTI pairs in ``imagesTr/`` and ``labelsTr/``. 2D slices along ``slice_axis``.
- glas: ``X.bmp`` + ``X_anno.bmp`` (PNG too) in one folder; ``Grade.csv`` with patient ids,
  optional. One 2D image per image.

Files whose names start with a dot (the ``._*`` files of the MSD archives) are ignored.

Orientation, disk -> array, the same for training and testing, image and mask alike:

- PNG / BMP: (rows, columns) as a viewer shows the picture, top row first, never
  transposed (MONAI's ``PILReader`` transposes; the reference pipeline trained on that).
- NIfTI: reoriented to the closest canonical RAS+ (``nibabel.as_closest_canonical``);
  a slice keeps the other two axes (u, v) in RAS order and is shown as
  ``plane.T[::-1, ::-1]``: rows run from +v down, columns from +u leftwards. Axial:
  anterior up, the patient's right on the image's left (radiological view); sagittal:
  superior up, anterior left; coronal: superior up, the patient's right on the left.

Intensity, to [0, 1]: CT is clipped to ``window`` (spleen default [-150, 250] HU, the
abdominal soft-tissue window) and scaled; MRI (per volume), ultrasound and histology (per
image, in grayscale) map the ``percentiles`` (default 0.5, 99.5) to 0 and 1, clipped.
Masks: label > 0 is foreground (BUSI's extra masks unioned, GlaS glands merged).
Both are resized to ``image_size`` squared (aspect not kept): images linearly with
anti-aliasing, masks by nearest neighbour. A 2D image is kept when its mask has
foreground at that size; a volume or image with none is warned about and skipped.

Patients: an MSD volume is a patient; a BUSI image is one (no ids are published); a GlaS
image belongs to the patient ``Grade.csv`` names, else to itself. Splits are drawn over
patients (:func:`patient_split`) and stored, with every slice id, in the cache and in
each run's ``split_manifest.json``.

Cache: ``<cache>/<name>-<key>/`` (:mod:`trainables.cache`: built once, atomically, under a
file lock), keyed by the data set's settings (not its path), the relative names, sizes and
modification times of the files read, ``image_size``, ``data_seed`` and ``CACHE_VERSION``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.transform import resize

from trainables.cache import cached_directory
from trainables.config import MedicalDatasetConfig, MedicalSplitConfig, StudyConfig, VolumeDatasetConfig, stable_hash
from trainables.data import TrialData, input_images, perturbed_conditions, split_manifest
from trainables.texture import summarise

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when preparation changes what it writes
SPLITS = ("train", "val", "test")
RAS_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # after as_closest_canonical: x (R), y (A), z (S)
BUSI_CATEGORIES = ("benign", "malignant")
BUSI_MASK = re.compile(r"_mask(_\d+)?$")
MSD_LAYOUT = "Medical Segmentation Decathlon layout: dataset.json, imagesTr/, labelsTr/"
METADATA_FILES = ("dataset.json", "Grade.csv")


class MedicalDataError(ValueError):
    """A data folder in the wrong layout or a file that cannot be used; the message names the path."""


@dataclass(frozen=True)
class Case:
    """One image or volume of a data set, with its mask file(s)."""

    patient: str
    case_id: str
    image: Path
    masks: tuple[Path, ...]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def busi_cases(root: Path) -> list[Case]:
    """BUSI: ``benign/`` and ``malignant/`` hold ``X.png`` with ``X_mask.png`` and maybe ``X_mask_1.png``."""
    missing = [f"{name}/" for name in BUSI_CATEGORIES if not (root / name).is_dir()]
    if missing:
        raise MedicalDataError(f"{root}: expected the BUSI subfolders benign/ and malignant/, missing {missing}")
    cases = []
    for category in BUSI_CATEGORIES:
        pictures = [p for p in _visible_files(root / category) if p.suffix.lower() == ".png"]
        names = {p.name for p in pictures}
        for image in pictures:
            if BUSI_MASK.search(image.stem):
                continue
            mask = image.with_name(f"{image.stem}_mask.png")
            if mask.name not in names:
                raise MedicalDataError(
                    f"{mask}: not found, the mask of {image.name} (BUSI layout: 'X.png', 'X_mask.png')"
                )
            extra = re.compile(re.escape(image.stem) + r"_mask_\d+\.png")
            masks = [mask] + [p for p in pictures if extra.fullmatch(p.name)]
            cases.append(Case(image.stem, image.stem, image, tuple(masks)))
    if not cases:
        raise MedicalDataError(f"{root}: no images in benign/ or malignant/ (BUSI layout: 'X.png' with 'X_mask.png')")
    return cases


def msd_cases(root: Path) -> list[Case]:
    """A Medical Segmentation Decathlon task: the volumes that ``dataset.json`` lists under "training"."""
    manifest = root / "dataset.json"
    if not manifest.is_file():
        raise MedicalDataError(f"{manifest}: not found ({MSD_LAYOUT})")
    for folder in ("imagesTr", "labelsTr"):
        if not (root / folder).is_dir():
            raise MedicalDataError(f"{root / folder}: folder not found ({MSD_LAYOUT})")
    try:
        entries = [(entry["image"], entry["label"]) for entry in json.loads(manifest.read_text())["training"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MedicalDataError(
            f"{manifest}: unreadable, or no 'training' list of image/label ({_one_line(error)})"
        ) from None
    cases = []
    for image_name, label_name in entries:
        image, label = root / image_name, root / label_name
        for path in (image, label):
            if not path.is_file():
                raise MedicalDataError(f"{path}: listed in {manifest} but not found")
        case_id = image.name.removesuffix(".gz").removesuffix(".nii")
        cases.append(Case(case_id, case_id, image, (label,)))
    if not cases:
        raise MedicalDataError(f"{manifest}: the 'training' list is empty")
    return cases


def _glas_patients(table: Path) -> dict[str, str]:
    """Image name -> patient id from GlaS's ``Grade.csv`` (columns 'name' and 'patient ID'); {} without one."""
    if not table.is_file():
        return {}
    try:
        with table.open(newline="") as handle:
            rows = [
                {k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(handle)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise MedicalDataError(f"{table}: unreadable ({_one_line(error)})") from None
    if not rows:
        return {}
    column = next((key for key in rows[0] if "patient" in key), None)
    if column is None or "name" not in rows[0]:
        raise MedicalDataError(f"{table}: expected the columns 'name' and 'patient ID'")
    return {row["name"]: f"patient_{row[column]}" for row in rows}


def glas_cases(root: Path) -> list[Case]:
    """GlaS: ``X.bmp`` with ``X_anno.bmp`` (PNG too) in one folder; patients from ``Grade.csv`` when present."""
    pictures = [p for p in _visible_files(root) if p.suffix.lower() in (".bmp", ".png")]
    annotations = {p.stem.removesuffix("_anno"): p for p in pictures if p.stem.endswith("_anno")}
    if not annotations:
        raise MedicalDataError(f"{root}: no 'X_anno.bmp' annotations (GlaS layout: 'X.bmp' with 'X_anno.bmp')")
    patients = _glas_patients(root / "Grade.csv")
    cases = []
    for image in pictures:
        if image.stem.endswith("_anno"):
            continue
        if image.stem not in annotations:
            expected = image.with_name(f"{image.stem}_anno{image.suffix}")
            raise MedicalDataError(f"{expected}: not found, the annotation of {image.name} (GlaS layout)")
        cases.append(Case(patients.get(image.stem, image.stem), image.stem, image, (annotations[image.stem],)))
    return cases


LAYOUTS: dict[str, Callable[[Path], list[Case]]] = {
    "busi": busi_cases,
    "spleen": msd_cases,
    "heart": msd_cases,
    "glas": glas_cases,
}


def check_layout(name: str, path: str | Path) -> list[Case]:
    """The cases of data set ``name`` in ``path``; cheap (lists files, reads none but the metadata).

    Raises:
        MedicalDataError: a missing folder, or a layout that is not the published one (naming the path).
    """
    path = Path(path)
    if not path.is_dir():
        raise MedicalDataError(f"{path}: folder not found (it should hold the {name} data set as published)")
    return LAYOUTS[name](path)


def _read_picture(path: Path, labels: bool = False) -> np.ndarray:
    try:
        with Image.open(path) as picture:
            if picture.mode == "P" and not labels:
                picture = picture.convert("RGB")
            return np.asarray(picture)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise MedicalDataError(f"{path}: cannot read the image ({_one_line(error)})") from None


def _grayscale(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array.astype(np.float64)
    if array.shape[2] < 3:
        return array[..., 0].astype(np.float64)
    return array[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _foreground(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array > 0
    colour = array[..., :1] if array.shape[2] < 3 else array[..., :3]  # never the alpha channel
    return (colour > 0).any(axis=-1)


def _read_volume(path: Path) -> np.ndarray:
    import nibabel

    try:
        data = np.asanyarray(nibabel.as_closest_canonical(nibabel.load(path)).dataobj)
    except (OSError, EOFError, ValueError, zlib.error, nibabel.filebasedimages.ImageFileError) as error:
        raise MedicalDataError(f"{path}: cannot read the NIfTI volume ({_one_line(error)})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise MedicalDataError(f"{path}: expected a 3D volume, got shape {data.shape}")
    return data


def display_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along RAS ``axis`` of a canonical volume, as displayed (see the module docstring)."""
    return np.take(volume, index, axis=axis).T[::-1, ::-1]


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values.astype(np.float64) - low) / (high - low), 0.0, 1.0)


def _to_size(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    if image.shape != (size, size):
        image = resize(image, (size, size), order=1, anti_aliasing=True, preserve_range=True)
        mask = resize(mask.astype(np.float32), (size, size), order=0, anti_aliasing=False, preserve_range=True) > 0.5
    return image, mask


Slice = tuple[str, np.ndarray, np.ndarray]  # slice id, image in [0, 1], boolean mask


def picture_slices(case: Case, dataset: MedicalDatasetConfig, size: int) -> list[Slice]:
    """The one 2D image of a BUSI or GlaS case, if its mask has foreground at ``size``."""
    image = _grayscale(_read_picture(case.image))
    mask = np.zeros(image.shape, dtype=bool)
    for path in case.masks:
        labels = _foreground(_read_picture(path, labels=True))
        if labels.shape != image.shape:
            raise MedicalDataError(
                f"{path}: mask shape {labels.shape} differs from image {case.image.name} {image.shape}"
            )
        mask |= labels
    image, mask = _to_size(_scale(image, *np.percentile(image, dataset.percentiles)), mask, size)
    return [(case.case_id, image, mask)] if mask.any() else []


def volume_slices(case: Case, dataset: VolumeDatasetConfig, size: int) -> list[Slice]:
    """The slices of an MSD volume along ``dataset.slice_axis`` whose label has foreground at ``size``."""
    image, label = _read_volume(case.image), _read_volume(case.masks[0]) > 0
    if label.shape != image.shape:
        raise MedicalDataError(
            f"{case.masks[0]}: label shape {label.shape} differs from image {case.image.name} {image.shape} (as RAS)"
        )
    low, high = dataset.window or np.percentile(image, dataset.percentiles)
    axis = RAS_AXIS[dataset.slice_axis]
    others = tuple(a for a in range(3) if a != axis)
    slices = []
    for index in np.flatnonzero(label.any(axis=others)):
        picture = _scale(display_slice(image, axis, index), low, high)
        picture, mask = _to_size(picture, display_slice(label, axis, index), size)
        if mask.any():
            slices.append((f"{case.case_id}/{dataset.slice_axis[0]}{index:03d}", picture, mask))
    return slices


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
    rng = np.random.default_rng(np.random.SeedSequence([data_seed, zlib.crc32(dataset.encode())]))
    shuffled = [ordered[i] for i in rng.permutation(n)]
    n_train = n - n_val - n_test
    parts = {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }
    return {name: sorted(part) for name, part in parts.items()}


def medical_cache_key(config: StudyConfig, name: str, cases: list[Case]) -> dict:
    """Everything the prepared data depend on: settings (not the folder's path) and the files' names, sizes, times."""
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
        "settings": dataset.model_dump(mode="json", exclude={"path", "model", "training"}),
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
    split = patient_split(patients, dataset.split, name, config.data_seed)
    np.save(folder / "images.npy", np.stack(images))
    np.save(folder / "masks.npy", np.stack(masks))
    meta = {"dataset": name, "slice_ids": ids, "patients": patients, "split": split, "skipped": skipped}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def prepare_medical(config: StudyConfig, name: str, cache_root: str | Path) -> Path:
    """Build (once per machine and content) and return the cache folder of medical data set ``name``.

    Raises:
        MedicalDataError: a bad layout, an unreadable file or a mask whose shape differs from its image.
    """
    if getattr(config.datasets, name, None) is None:
        raise ValueError(f"the study has no data set '{name}'")
    cases = check_layout(name, getattr(config.datasets, name).path)
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


def medical_trial_data(config: StudyConfig, dataset: str, cache_root: str | Path) -> TrialData:
    """Training and validation splits, and the in-domain test split under every test level of the study."""
    data = load_medical(prepare_medical(config, dataset, cache_root))
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


def prepare_report(config: StudyConfig, dataset: str, cache_root: str | Path) -> str:
    """Prepare a data set and describe it: patients and slices per split, TS of the test split per test level."""
    folder = prepare_medical(config, dataset, cache_root)
    data = load_medical(folder)
    lines = [f"{dataset}: {len(data.slice_ids)} slices of {len(set(data.patients))} patients in {folder}"]
    lines.append("  split   patients   slices")
    for part in SPLITS:
        lines.append(f"  {part:<7} {len(data.split[part]):>8}   {len(data.indices(part)):>6}")
    trial = medical_trial_data(config, dataset, cache_root)
    lines.append("  test level   TS mean   TS std   (harder levels should have lower TS)")
    for condition in trial.conditions:
        stats = summarise(condition.ts)
        lines.append(f"  {condition.name:<10} {stats['mean']:9.3f}  {stats['std']:7.3f}")
    return "\n".join(lines)
