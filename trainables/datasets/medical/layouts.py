"""Which files make a medical data set, by its published layout: listed and checked without reading any image.

BUSI, the Medical Segmentation Decathlon tasks (spleen, heart) and GlaS (two layouts); the package
docstring (:mod:`trainables.datasets.medical`) describes each layout.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BUSI_CATEGORIES = ("benign", "malignant")
BUSI_MASK = re.compile(r"_mask(_\d+)?$")
MSD_LAYOUT = "Medical Segmentation Decathlon layout: dataset.json, imagesTr/, labelsTr/"
METADATA_FILES = ("dataset.json", "Grade.csv")
GLAS_LAYOUT = "GlaS layout: 'X.bmp' with 'X_anno.bmp'"
GLAS_FOLDERS = {"Train_Folder": "train", "Test_Folder": "test"}  # folder -> the split it holds
GLAS_FOLDER_LAYOUT = "GlaS folder layout: Train_Folder/ and Test_Folder/, each with img/N.png and labelcol/N.png"
PICTURE_SUFFIXES = (".bmp", ".png")


class MedicalDataError(ValueError):
    """A data folder in the wrong layout or a file that cannot be used; the message names the path."""


@dataclass(frozen=True)
class Case:
    """One image or volume of a data set, with its mask file(s)."""

    patient: str
    case_id: str
    image: Path
    masks: tuple[Path, ...]
    given_split: str | None = None  # "train" / "test" where the layout fixes the split; None: drawn over patients
    foreground_required: bool = False  # a mask with no foreground at all is refused (else the case is skipped)


def one_line(error: BaseException) -> str:
    """An error's message on one line (its type's name when it has none)."""
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
            f"{manifest}: unreadable, or no 'training' list of image/label ({one_line(error)})"
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
        raise MedicalDataError(f"{table}: unreadable ({one_line(error)})") from None
    if not rows:
        return {}
    column = next((key for key in rows[0] if "patient" in key), None)
    if column is None or "name" not in rows[0]:
        raise MedicalDataError(f"{table}: expected the columns 'name' and 'patient ID'")
    return {row["name"]: f"patient_{row[column]}" for row in rows}


def glas_cases(root: Path) -> list[Case]:
    """GlaS: ``X.bmp`` with ``X_anno.bmp`` (PNG too) in one folder; patients from ``Grade.csv`` when present."""
    pictures = [p for p in _visible_files(root) if p.suffix.lower() in PICTURE_SUFFIXES]
    annotations = {p.stem.removesuffix("_anno"): p for p in pictures if p.stem.endswith("_anno")}
    if not annotations:
        raise MedicalDataError(f"{root}: no 'X_anno.bmp' annotations ({GLAS_LAYOUT}; or {GLAS_FOLDER_LAYOUT})")
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


def glas_folder_cases(root: Path) -> list[Case]:
    """GlaS as UCTransNet and UDTransNet redistribute it: ``Train_Folder/`` and ``Test_Folder/``, split as given.

    Each folder holds ``img/N.png`` (RGB) with ``labelcol/N.png`` (gland instance ids, 0 = background;
    BMP too); ``labelcol > 0`` is foreground. The folders give the split: the official 85 training
    and 80 test images (testA and testB together), the test split used as given; validation is drawn
    from the training images (``prepare.given_split``). The layout carries no patient ids (no
    ``Grade.csv``, while GlaS's 165 images come from 16 patients): each image is its own patient, so a
    validation image may share a patient with training images, and whether the official test split
    shares patients with training cannot be checked. Case ids are ``Train_Folder/N`` and
    ``Test_Folder/N`` (the two folders reuse the names). Every mask must have foreground somewhere
    (every GlaS image has glands): an empty one is refused when it is read.

    Raises:
        MedicalDataError: a missing or empty folder, an image without its mask or a mask without
            its image, naming the path.
    """
    cases = []
    for folder, split in GLAS_FOLDERS.items():
        images, masks = root / folder / "img", root / folder / "labelcol"
        for sub in (images, masks):
            if not sub.is_dir():
                raise MedicalDataError(f"{sub}: folder not found ({GLAS_FOLDER_LAYOUT})")
        pictures = [p for p in _visible_files(images) if p.suffix.lower() in PICTURE_SUFFIXES]
        if not pictures:
            raise MedicalDataError(f"{images}: no images ({GLAS_FOLDER_LAYOUT})")
        labels = {p.stem: p for p in _visible_files(masks) if p.suffix.lower() in PICTURE_SUFFIXES}
        for image in pictures:
            mask = labels.pop(image.stem, None)
            if mask is None:
                raise MedicalDataError(f"{masks / image.name}: not found, the mask of {image} ({GLAS_FOLDER_LAYOUT})")
            case_id = f"{folder}/{image.stem}"
            cases.append(Case(case_id, case_id, image, (mask,), given_split=split, foreground_required=True))
        if labels:
            orphan = min(labels.values())
            raise MedicalDataError(f"{orphan}: a mask without its image {images / orphan.name} ({GLAS_FOLDER_LAYOUT})")
    return cases


def found_glas_layout(root: Path) -> str:
    """The GlaS layout in ``root``, named as ``datasets.glas.layout`` names it: the folders if any, else official."""
    return "train_test_folders" if any((root / folder).is_dir() for folder in GLAS_FOLDERS) else "official"


def read_layout(name: str, path: str | Path, layout: Callable[[Path], list[Case]]) -> list[Case]:
    """The cases of data set ``name`` in ``path``, listed by ``layout`` (one of the readers above).

    Cheap: lists files and reads none but the metadata. Which reader a data set uses is
    decided in one place, :func:`trainables.datasets.registry.medical_cases`.

    Raises:
        MedicalDataError: a missing folder, or a layout that is not the published one (naming the path).
    """
    path = Path(path)
    if not path.is_dir():
        raise MedicalDataError(f"{path}: folder not found (it should hold the {name} data set as published)")
    return layout(path)
