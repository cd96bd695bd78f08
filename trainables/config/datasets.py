"""The data sets of a study: synthetic textures and medical data from the user's disk.

Alpha convention (stated once, here): ``alpha`` is the share of the foreground
texture inside the mask, as the MICCAI 2023 paper writes it,
``I(x | mask) = alpha * FG(x) + (1 - alpha) * BG(x)``, so ``alpha = 1`` is the
easiest task (pure foreground texture) and alpha near 0 the hardest. The released
code blends the other way round (higher value = harder); a study file written in
that convention sets ``alpha_convention: released`` and its levels are read as
``1 - value``. Inside the project every alpha is in the paper's convention.

Medical data sets (``busi``, ``spleen``, ``heart``, ``glas``) name the folder where the data
already lie (``path``: ``${VAR}`` expanded, relative to the study file). The schema reads no
data: ``trainables.datasets.registry.check_data`` checks the folders and texture files before a
study runs. Each medical data set may carry partial ``model`` / ``training`` overrides (the medical
experiments use a 6-level U-Net and lr 1e-2): :meth:`trainables.config.StudyConfig.for_dataset`
applies them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from trainables.config.base import Section
from trainables.config.names import MEDICAL_DATASETS
from trainables.config.protocol import ModelConfig, TrainingConfig


class MaskConfig(Section):
    """Random smooth closed masks: a closed Bezier curve through random points, filled."""

    construction: Literal["sectors", "released"] = Field(
        "sectors",
        description="'sectors': one control point per sector around the centre, the shape scaled to a random "
        "extent (mean foreground area ~0.20); 'released': the authors' masks, control points uniform in box^2, "
        "the outline dilated by a dilation x dilation square and filled (smaller, more centred: mean area ~0.15).",
    )
    points: int = Field(4, ge=3, le=32, description="Random control points of the closed curve (released: 4).")
    radius: float = Field(1.0, gt=0, le=1.0, description="Length of the Bezier handles, relative (released: 1.0).")
    edginess: float = Field(0.05, ge=0, le=1.0, description="0 = smooth tangents, 1 = corners (released: 0.05).")
    min_extent: float = Field(
        0.35, gt=0, le=1.0, description="'sectors': smallest shape width as a share of the image side."
    )
    max_extent: float = Field(
        0.75, gt=0, le=1.0, description="'sectors': largest shape width as a share of the image side."
    )
    box: tuple[float, float] = Field(
        (0.25, 0.75), description="'released': control points are uniform in [box[0], box[1]]^2 of the image."
    )
    dilation: int = Field(
        9, ge=1, description="'released': side of the square that dilates the drawn outline, in pixels at drawn_at."
    )
    drawn_at: int = Field(
        256, ge=16, description="'released': side the mask is drawn at (released: 256) before resizing to image_size."
    )

    @model_validator(mode="after")
    def _extent_order(self) -> MaskConfig:
        if self.min_extent > self.max_extent:
            raise ValueError("min_extent must not exceed max_extent")
        if not 0.0 <= self.box[0] < self.box[1] <= 1.0:
            raise ValueError(f"box {list(self.box)} must satisfy 0 <= box[0] < box[1] <= 1")
        return self


class SplitConfig(Section):
    """Image counts per split; the same images form each split at every alpha level."""

    train: int = Field(70, ge=1, description="Training images per level (paper 70).")
    val: int = Field(10, ge=1, description="Validation images per level (paper 10).")
    test: int = Field(20, ge=1, description="Test images per level (paper 20).")

    @property
    def total(self) -> int:
        return self.train + self.val + self.test


class SyntheticConfig(Section):
    """The synthetic texture data set: two textures blended inside random masks."""

    background: str = Field("grass", description="Background texture: a scikit-image name or an image file path.")
    foreground: str = Field("gravel", description="Foreground texture: a scikit-image name or an image file path.")
    alpha_convention: Literal["paper", "released"] = Field(
        "paper",
        description="'paper': alpha = foreground share inside the mask, 1 = easiest. "
        "'released': the authors' code, value = 1 - alpha, higher = harder.",
    )
    levels: tuple[float, ...] = Field(
        (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        min_length=1,
        description="Alpha levels in the convention above (paper: 0.1 ... 0.9); each alpha in (0, 1] to 6 decimals.",
    )
    direction: Literal["foreground", "background_bleed"] = Field(
        "foreground",
        description="'foreground': the foreground is blended into the mask; 'background_bleed': the foreground "
        "texture bleeds into the background outside the mask (released code's second data set).",
    )
    crop_size: int | None = Field(
        None, ge=8, description="Side of the random texture crops before resizing to image_size; null = image_size."
    )
    split: SplitConfig = Field(default_factory=SplitConfig)
    mask: MaskConfig = Field(default_factory=MaskConfig)

    @field_validator("levels")
    @classmethod
    def _check_levels(cls, levels: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        released = info.data.get("alpha_convention") == "released"
        for value in levels:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"alpha level {value} is outside (0, 1]")
            alpha = round(1.0 - value if released else value, 6)  # alphas are kept to 6 decimals
            if alpha <= 0.0:
                how = f" (released level: 1 - {value})" if released else ""
                raise ValueError(f"level {value} is alpha {alpha:g}{how}; alphas must be in (0, 1], at least 0.000001")
        rounded = [round(v, 6) for v in levels]
        duplicates = sorted({v for v in rounded if rounded.count(v) > 1})
        if duplicates:
            raise ValueError(f"duplicate alpha levels {duplicates}")
        return levels

    @property
    def alphas(self) -> tuple[float, ...]:
        """Levels in the paper's convention (alpha = foreground share, 1 = easiest), sorted."""
        if self.alpha_convention == "released":
            return tuple(sorted(round(1.0 - v, 6) for v in self.levels))
        return tuple(sorted(round(v, 6) for v in self.levels))


class MedicalSplitConfig(Section):
    """Shares of the PATIENTS (volumes; images where a data set has no patient ids) in each split.

    The papers give slice counts; the defaults are those counts as shares (BUSI 400 / 100 / 147
    of 647 images = 0.618 / 0.155 / 0.227), applied to patients because slices per volume vary.
    Validation and test get ``round(share x patients)`` patients, at least one each; training the rest.
    """

    train: float = Field(gt=0, lt=1, description="Share of patients for training.")
    val: float = Field(gt=0, lt=1, description="Share of patients for validation.")
    test: float = Field(gt=0, lt=1, description="Share of patients for testing.")

    @model_validator(mode="after")
    def _sum_to_one(self) -> MedicalSplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-3:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


def _split(train: float, val: float, test: float) -> Any:
    return Field(
        default_factory=lambda: MedicalSplitConfig(train=train, val=val, test=test),
        description=f"Patient shares per split (default {train} / {val} / {test}, the paper's proportions).",
    )


class MedicalDatasetConfig(Section):
    """A medical data set read from the user's disk, in its original published layout (never downloaded)."""

    path: str = Field(
        description="Folder of the data set as published; relative to the study file; ${VAR} is expanded."
    )
    split: MedicalSplitConfig
    percentiles: tuple[float, float] = Field(
        (0.5, 99.5),
        description="Intensity: these percentiles of each image (each volume for MRI) map to 0 and 1, clipped; "
        "(0, 100) is min-max. Unused where a CT window is set.",
    )
    model: dict[str, Any] | None = Field(
        None, description="Partial 'model' for this data set's trials, merged onto the study's (medical: 6 levels)."
    )
    training: dict[str, Any] | None = Field(
        None, description="Partial 'training' for this data set's trials, merged onto the study's (medical: lr 1e-2)."
    )

    @field_validator("percentiles")
    @classmethod
    def _check_percentiles(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= value[0] < value[1] <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {list(value)}")
        return value

    @field_validator("model", "training")
    @classmethod
    def _known_override_keys(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        section = ModelConfig if info.field_name == "model" else TrainingConfig
        unknown = sorted(set(value or {}) - set(section.model_fields))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; known: {sorted(section.model_fields)}")
        return value


class VolumeDatasetConfig(MedicalDatasetConfig):
    """A Medical Segmentation Decathlon task: NIfTI volumes cut into 2D slices."""

    slice_axis: Literal["axial", "sagittal", "coronal"]
    window: tuple[float, float] | None = None

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] >= value[1]:
            raise ValueError(f"window must be [low, high] with low < high, got {list(value)}")
        return value


class BusiConfig(MedicalDatasetConfig):
    """Breast ultrasound (BUSI): ``benign/`` and ``malignant/`` PNGs with ``_mask.png``; ``normal/`` is excluded."""

    split: MedicalSplitConfig = _split(0.618, 0.155, 0.227)  # 400 / 100 / 147 of 647 images


class SpleenConfig(VolumeDatasetConfig):
    """MSD Task09 Spleen (CT): axial slices with spleen, intensity through a CT window."""

    split: MedicalSplitConfig = _split(0.669, 0.091, 0.240)  # 601 / 82 / 216 of 899 slices
    slice_axis: Literal["axial", "sagittal", "coronal"] = Field("axial", description="Slicing plane (paper: axial).")
    window: tuple[float, float] | None = Field(
        (-150.0, 250.0),
        description="CT window [low, high] in HU, clipped then scaled to [0, 1] (default: abdominal soft tissue, "
        "level 50 width 400); null = percentiles.",
    )


class HeartConfig(VolumeDatasetConfig):
    """MSD Task02 Heart, left atrium (MRI): sagittal slices with atrium, per-volume percentile scaling."""

    split: MedicalSplitConfig = _split(0.679, 0.176, 0.145)  # 563 / 146 / 120 of 829 slices
    slice_axis: Literal["axial", "sagittal", "coronal"] = Field(
        "sagittal", description="Slicing plane (paper: sagittal)."
    )
    window: tuple[float, float] | None = Field(None, description="Intensity window; null = percentiles (MRI).")


class GlasConfig(MedicalDatasetConfig):
    """GlaS colon histology, read as grayscale, in one of two layouts (``layout``).

    ``official``: ``NAME.bmp`` / ``NAME_anno.bmp`` pairs (PNG too) in one folder. The journal used
    GlaS for testing only (its 80 test images); here it is split like the others (default: 80 of
    165 images tested), by the patient ids of ``Grade.csv`` when present.
    ``train_test_folders``: ``Train_Folder/`` and ``Test_Folder/``, each with ``img/`` and ``labelcol/``
    (as UCTransNet and UDTransNet redistribute it, without patient ids): the official 85 / 80 train /
    test split as given, validation drawn from training by ``val / (train + val)`` (default 17 of 85).
    """

    split: MedicalSplitConfig = _split(0.412, 0.103, 0.485)
    layout: Literal["auto", "official", "train_test_folders"] = Field(
        "auto",
        description="'official': X.bmp + X_anno.bmp (+ Grade.csv); 'train_test_folders': Train_Folder/ and "
        "Test_Folder/ with img/ + labelcol/, the official train / test split as given (split.test unused); "
        "'auto': the folders when path has Train_Folder/ or Test_Folder/, else official.",
    )


class DatasetsConfig(Section):
    """The data sets of the study, by name: synthetic textures and medical data from the user's disk."""

    synthetic: SyntheticConfig | None = Field(None, description="The synthetic texture data set.")
    synthetic_background: SyntheticConfig | None = Field(
        None,
        description="A second synthetic data set, trained and reported as its own data set: the journal's other "
        "blending direction (direction: background_bleed, with its own texture pair in the released code).",
    )
    busi: BusiConfig | None = Field(None, description="Breast ultrasound (BUSI, Al-Dhabyani 2020).")
    spleen: SpleenConfig | None = Field(None, description="Spleen CT (Medical Segmentation Decathlon Task09).")
    heart: HeartConfig | None = Field(
        None, description="Heart MRI, left atrium (Medical Segmentation Decathlon Task02)."
    )
    glas: GlasConfig | None = Field(None, description="Colon histology (GlaS); journal only.")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name in type(self).model_fields if getattr(self, name) is not None)

    @property
    def medical(self) -> tuple[str, ...]:
        """Names of the medical data sets of the study."""
        return tuple(name for name in self.names if name in MEDICAL_DATASETS)
