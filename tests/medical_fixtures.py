"""Tiny medical data sets written in their real published layouts (PNG, BMP, NIfTI + dataset.json).

They stand in for BUSI, MSD Task09 Spleen, MSD Task02 Heart and GlaS (official layout; the
Train_Folder / Test_Folder one: :func:`write_glas_folders`), which cannot be downloaded here.
Each lesion or organ has its own texture, so the test levels move TS.

    python -m tests.medical_fixtures OUT_DIR     # OUT_DIR/{Dataset_BUSI_with_GT,Task09_Spleen,Task02_Heart,GlaS}
    SKIPSWEEP_DATA=OUT_DIR python -m trainables.datasets prepare --config conf/example_medical_tiny.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

FOLDERS = {"busi": "Dataset_BUSI_with_GT", "spleen": "Task09_Spleen", "heart": "Task02_Heart", "glas": "GlaS"}
LPS = np.diag([-1.0, -1.0, 2.5, 1.0])  # x and y flipped, 2.5 mm slices: the usual CT storage


def ellipse(shape: tuple[int, int], center: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """A filled ellipse (boolean) in an array of ``shape``."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return ((rows - center[0]) / radii[0]) ** 2 + ((cols - center[1]) / radii[1]) ** 2 <= 1.0


def textured(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An image in [0, 1]: smooth bright background, a darker, rougher texture inside ``mask``."""
    background = 0.6 + 0.25 * gaussian_filter(rng.standard_normal(mask.shape), 2.0) * 3.0
    foreground = 0.25 + 0.12 * rng.standard_normal(mask.shape)
    return np.clip(np.where(mask, foreground, background), 0.0, 1.0)


def random_blob(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    center = (rng.uniform(0.35, 0.65) * shape[0], rng.uniform(0.35, 0.65) * shape[1])
    return ellipse(shape, center, (rng.uniform(0.15, 0.3) * shape[0], rng.uniform(0.15, 0.3) * shape[1]))


def save_png(path: Path, array: np.ndarray) -> None:
    """Save a [0, 1] float or a boolean array as an 8-bit picture (format from the suffix)."""
    Image.fromarray(np.round(np.asarray(array, dtype=np.float64) * 255).astype(np.uint8)).save(path)


def write_busi(root: Path, benign: int = 4, malignant: int = 3, size: int = 32, seed: int = 0) -> dict[str, int]:
    """BUSI layout; ``benign (1)`` has a second lesion in ``_mask_1.png``; ``normal/`` must be ignored.

    Returns:
        Expected 2D images per patient (each image is its own patient).
    """
    rng = np.random.default_rng(seed)
    expected = {}
    for category, count in (("benign", benign), ("malignant", malignant), ("normal", 2)):
        folder = root / category
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(1, count + 1):
            stem = f"{category} ({number})"
            mask = random_blob((size, size), rng) if category != "normal" else np.zeros((size, size), bool)
            extra = ellipse((size, size), (4, 4), (3, 3)) if stem == "benign (1)" else None
            union = mask | extra if extra is not None else mask
            rgb = np.repeat(textured(union, rng)[..., None], 3, axis=2)  # BUSI PNGs are RGB
            save_png(folder / f"{stem}.png", rgb)
            save_png(folder / f"{stem}_mask.png", mask)
            if extra is not None:
                save_png(folder / f"{stem}_mask_1.png", extra)
            if category != "normal":
                expected[stem] = 1
    return expected


def write_msd(
    root: Path,
    prefix: str = "spleen",
    modality: str = "CT",
    axis: int = 2,
    shape: tuple[int, int, int] = (32, 32, 6),
    patients: int = 5,
    seed: int = 0,
) -> dict[str, int]:
    """An MSD task: patient k has foreground in k slices along RAS ``axis``; one more volume has none.

    Volumes after the first are stored LPS (x and y flipped, non-identity affine), as CT usually is.

    Returns:
        Expected foreground slices per patient (the empty volume is absent).
    """
    rng = np.random.default_rng(seed)
    plane_shape = tuple(n for a, n in enumerate(shape) if a != axis)
    expected, volumes = {}, {}
    for number in range(1, patients + 2):
        label = np.zeros(shape, dtype=np.uint8)
        count = number if number <= patients else 0
        first = (shape[axis] - count) // 2
        for index in range(first, first + count):
            np.moveaxis(label, axis, 0)[index] = random_blob(plane_shape, rng)
        image = textured(label > 0, rng)
        image = (image * 400 - 150).astype(np.int16) if modality == "CT" else (image * 800).astype(np.float32)
        volumes[f"{prefix}_{number}"] = (image, label, "ras" if number == 1 else "lps")
        if count:
            expected[f"{prefix}_{number}"] = count
    write_msd_task(root, prefix, modality, volumes)
    return expected


def write_msd_task(
    root: Path, prefix: str, modality: str, volumes: dict[str, tuple[np.ndarray, np.ndarray, str]]
) -> None:
    """The MSD layout: ``imagesTr/``, ``labelsTr/``, ``imagesTs/`` and ``dataset.json`` listing the training pairs.

    Args:
        volumes: name -> (image, label, storage), arrays in RAS voxel order (see :func:`write_nifti`).
    """
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    training = []
    for name, (image, label, storage) in volumes.items():
        write_nifti(root / "imagesTr" / f"{name}.nii.gz", image, storage)
        write_nifti(root / "labelsTr" / f"{name}.nii.gz", label, storage)
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    (root / "imagesTr" / f"._{prefix}_1.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    write_nifti(root / "imagesTs" / f"{prefix}_99.nii.gz", np.zeros((4, 4, 4), np.int16))
    manifest = {
        "name": prefix,
        "modality": {"0": modality},
        "labels": {"0": "background", "1": prefix},
        "numTraining": len(training),
        "training": training,
        "test": [f"./imagesTs/{prefix}_99.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(manifest, indent=2))


def write_nifti(path: Path, ras: np.ndarray, storage: str = "ras") -> None:
    """Write a volume given in RAS voxel order with the same world content in one of three storages.

    ``ras``: identity affine; ``lps``: x and y flipped, 2.5 mm slices (how CT is usually stored);
    ``permuted``: voxel axes in the order (z, x, y).
    """
    import nibabel

    if storage == "ras":
        data, affine = ras, np.eye(4)
    elif storage == "lps":
        data, affine = ras[::-1, ::-1, :], LPS.copy()
        affine[:3, 3] = [ras.shape[0] - 1, ras.shape[1] - 1, 0]
    elif storage == "permuted":
        data = ras.transpose(2, 0, 1)
        affine = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
    else:
        raise ValueError(f"unknown storage '{storage}'")
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(data), affine), path)


def write_glas(root: Path, shape: tuple[int, int] = (40, 48), seed: int = 0) -> dict[str, int]:
    """GlaS: RGB BMPs with 8-bit instance-label ``_anno`` BMPs (one PNG pair), and ``Grade.csv``.

    Returns:
        Expected images per patient (patient ids as in ``Grade.csv``).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    patients = {"testA_1": 1, "testA_2": 1, "train_1": 2, "train_2": 2, "train_3": 3, "testB_1": 4}
    for name in patients:
        labels = random_blob(shape, rng).astype(np.uint8)
        labels[ellipse(shape, (6, 6), (4, 5))] = 2  # a second gland: instance label 2
        rgb = np.stack([textured(labels > 0, rng)] * 3, axis=2) * np.array([0.9, 0.6, 0.8])
        suffix = ".png" if name == "testB_1" else ".bmp"
        save_png(root / f"{name}{suffix}", rgb)
        Image.fromarray(labels).save(root / f"{name}_anno{suffix}")
    rows = ["name, patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)"]
    rows += [f"{name}, {patient}, benign, adenomatous" for name, patient in patients.items()]
    (root / "Grade.csv").write_text("\n".join(rows) + "\n")
    expected: dict[str, int] = {}
    for patient in patients.values():
        expected[f"patient_{patient}"] = expected.get(f"patient_{patient}", 0) + 1
    return expected


def write_glas_folders(
    root: Path, train: int = 10, test: int = 4, shape: tuple[int, int] = (40, 48), seed: int = 0
) -> dict[str, int]:
    """GlaS as UCTransNet / UDTransNet redistribute it: ``{Train,Test}_Folder/{img,labelcol}/N.png``.

    RGB images; ``labelcol`` masks are 8-bit gland instance ids (0 background, 1 and 2 two glands).
    The two folders reuse the names ``1.png``, ``2.png``, ... as the real copy does.

    Returns:
        Expected images per patient: ``Train_Folder/N`` or ``Test_Folder/N``, one each.
    """
    rng = np.random.default_rng(seed)
    expected = {}
    for folder, count in (("Train_Folder", train), ("Test_Folder", test)):
        for sub in ("img", "labelcol"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
        for number in range(1, count + 1):
            labels = random_blob(shape, rng).astype(np.uint8)
            labels[ellipse(shape, (6, 6), (4, 5))] = 2
            rgb = np.stack([textured(labels > 0, rng)] * 3, axis=2) * np.array([0.9, 0.6, 0.8])
            save_png(root / folder / "img" / f"{number}.png", rgb)
            Image.fromarray(labels).save(root / folder / "labelcol" / f"{number}.png")
            expected[f"{folder}/{number}"] = 1
    return expected


def write_all(root: Path) -> dict[str, dict[str, int]]:
    """All four tiny data sets under ``root`` (folder names in ``FOLDERS``); expected slices per patient."""
    root = Path(root)
    return {
        "busi": write_busi(root / FOLDERS["busi"]),
        "spleen": write_msd(root / FOLDERS["spleen"], "spleen", "CT", axis=2, shape=(32, 32, 6)),
        "heart": write_msd(root / FOLDERS["heart"], "la", "MRI", axis=0, shape=(6, 32, 32), seed=1),
        "glas": write_glas(root / FOLDERS["glas"]),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the four tiny data sets into the folder given as the only argument."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tests.medical_fixtures OUT_DIR", file=sys.stderr)
        return 2
    for name, patients in write_all(Path(argv[0])).items():
        print(f"{name}: {Path(argv[0]) / FOLDERS[name]} ({sum(patients.values())} 2D images with foreground)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
