"""Study files: one YAML document parsed into frozen, typed objects.

Every number of the protocol (shared/PROTOCOL.md) is a field here, with its
description; nothing downstream reads a raw dict. A study file is refused before
any work starts, with a message that names the file and the key.

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
experiments use a 6-level U-Net and lr 1e-2): :meth:`StudyConfig.for_dataset` applies them.

    python -m trainables.config conf/quick.yaml   # validate and print a study
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from trainables.schema import format_alpha as format_alpha  # its old home, kept for existing imports

BUILTIN_TEXTURES = ("grass", "gravel", "brick")
MICCAI_VARIANTS = ("noskip_unet", "unet", "attention_unet")
JOURNAL_VARIANTS = ("vnet", "noskip_vnet", "unet_plus_plus")
VARIANTS = MICCAI_VARIANTS + JOURNAL_VARIANTS
TEST_LEVEL_ORDER = ("hardest", "harder", "in_domain", "easier", "easiest")
MEDICAL_DATASETS = ("busi", "spleen", "heart", "glas")
SYNTHETIC_DATASETS = ("synthetic", "synthetic_background")  # trained per alpha level
THROUGHPUT_FIELDS = ("channels_last", "compile", "cudnn_benchmark", "evaluation_batch_size")  # not hashed
MAX_SEED = 2**63 - 1  # seeds are int64 in runs.parquet; torch takes up to 2**64 - 1, numpy's legacy seed 2**32 - 1
MAX_STUDY_NAME = 100  # one path component under storage and cache, with room for Ray's own suffixes


class StudyConfigError(ValueError):
    """A study file that cannot be run; the message names the file and the key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextureSimilarityConfig(_Frozen):
    """Texture similarity TS = KL between LBP histograms of background and foreground.

    ``preset: paper`` (default) is Eq. 1 of the paper; ``preset: released``
    reproduces the authors' released code. Keys given next to a preset override it.
    """

    preset: Literal["paper", "released"] = Field("paper", description="Starting values for the fields below.")
    lbp_points: int = Field(8, ge=1, le=24, description="LBP sampling points P (paper 8, released 24).")
    lbp_radius: float = Field(1.0, gt=0, description="LBP radius R in pixels (paper 1, released 3).")
    lbp_method: Literal["default", "uniform", "nri_uniform", "ror"] = Field(
        "default", description="skimage LBP method (paper 'default', released 'uniform')."
    )
    kl_direction: Literal["background_foreground", "foreground_background"] = Field(
        "background_foreground",
        description="KL(background || foreground) as in the paper, or KL(foreground || background) as released.",
    )
    log_base: float = Field(2.0, gt=1, description="Base of the logarithm in the KL divergence.")
    resize_to: int | None = Field(
        None, ge=8, description="Resize image and mask to this square size before LBP (released: 256); null = as is."
    )
    mask_resize: Literal["nearest", "bilinear_nonzero"] = Field(
        "nearest",
        description="How resize_to resizes the mask: 'nearest' (foreground = value > 0.5), or 'bilinear_nonzero' "
        "as released (bilinear, foreground = any value > 0: the boundary ring joins the foreground).",
    )
    lbp_input: Literal["uint8", "float"] = Field(
        "uint8",
        description="What LBP compares: the image quantised to 8 bits ('uint8'), or the float image in [0, 1] "
        "as released ('float': interpolation after resizing creates no ties).",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") == "released":
            released = {
                "lbp_points": 24,
                "lbp_radius": 3.0,
                "lbp_method": "uniform",
                "kl_direction": "foreground_background",
                "log_base": 2.0,
                "resize_to": 256,
                "mask_resize": "bilinear_nonzero",
                "lbp_input": "float",
            }
            return {**released, **data}
        return data


class MaskConfig(_Frozen):
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


class SplitConfig(_Frozen):
    """Image counts per split; the same images form each split at every alpha level."""

    train: int = Field(70, ge=1, description="Training images per level (paper 70).")
    val: int = Field(10, ge=1, description="Validation images per level (paper 10).")
    test: int = Field(20, ge=1, description="Test images per level (paper 20).")

    @property
    def total(self) -> int:
        return self.train + self.val + self.test


class SyntheticConfig(_Frozen):
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


class MedicalSplitConfig(_Frozen):
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


class MedicalDatasetConfig(_Frozen):
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
    """GlaS colon histology: ``NAME.bmp`` / ``NAME_anno.bmp`` pairs (PNG too), read as grayscale.

    The journal used GlaS for testing only (its 80 test images); here it is split like the
    others (default: 80 of 165 images tested), by the patient ids of ``Grade.csv`` when present.
    """

    split: MedicalSplitConfig = _split(0.412, 0.103, 0.485)


class DatasetsConfig(_Frozen):
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


class PerturbationConfig(_Frozen):
    """One out-of-domain test level applied to a test set."""

    kind: Literal["none", "speckle", "background_blur"] = Field(description="What is done to the test image.")
    variance: float | None = Field(None, gt=0, description="Speckle noise variance (hardest 0.3, harder 0.1).")
    sigma: float | None = Field(
        None,
        gt=0,
        description="Gaussian blur sigma of the background (easier 3.0, easiest 7.0; papers say 'variance').",
    )

    @model_validator(mode="after")
    def _parameters_match_kind(self) -> PerturbationConfig:
        if self.kind == "speckle" and self.variance is None:
            raise ValueError("speckle needs 'variance'")
        if self.kind == "background_blur" and self.sigma is None:
            raise ValueError("background_blur needs 'sigma'")
        if self.kind != "speckle" and self.variance is not None:
            raise ValueError(f"'variance' does not apply to kind '{self.kind}'")
        if self.kind != "background_blur" and self.sigma is not None:
            raise ValueError(f"'sigma' does not apply to kind '{self.kind}'")
        return self


class ModelConfig(_Frozen):
    """Network shape shared by every variant (MONAI; random init, no dropout, no residual units)."""

    channels: tuple[int, ...] = Field(
        (16, 32, 64, 128, 256), min_length=2, description="U-Net channels per level (synthetic 5 levels, medical 6)."
    )
    strides: tuple[int, ...] = Field(
        (2, 2, 2, 2), min_length=1, description="Down-sampling strides, one fewer than channels."
    )
    norm: Literal["batch", "instance"] = Field("batch", description="Normalisation layer.")
    activation: Literal["relu", "prelu", "leakyrelu"] = Field("relu", description="Activation.")
    bias: bool = Field(
        True,
        description="Bias in the convolutions of noskip_unet, unet and unet_plus_plus (released medical "
        "networks: false); the V-Nets keep MONAI's no bias, the attention U-Net its bias.",
    )
    unet_plus_plus_features: tuple[int, int, int, int, int, int] = Field(
        (16, 32, 64, 128, 256, 16),
        description="BasicUNetPlusPlus features: five levels plus the full-resolution decoder width "
        "(released preset: (16, 32, 64, 128, 256, 512), 70x the FLOPs of the attention U-Net).",
    )

    @field_validator("channels", "strides", "unet_plus_plus_features")
    @classmethod
    def _positive(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 for v in values):
            raise ValueError("every value must be a positive integer")
        return values

    @model_validator(mode="after")
    def _levels_match(self) -> ModelConfig:
        if len(self.strides) != len(self.channels) - 1:
            raise ValueError(
                f"{len(self.channels)} channels need {len(self.channels) - 1} strides, got {len(self.strides)}"
            )
        return self


class TrainingConfig(_Frozen):
    """The training protocol, the same for every variant."""

    epochs: int = Field(100, ge=1, description="Epochs, no early stopping (paper 100).")
    batch_size: int = Field(8, ge=1, description="Batch size (released code 8).")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate, constant (synthetic 1e-3, medical 1e-2).")
    val_every: int = Field(
        2, ge=1, description="Validate every this many epochs (paper 2); the last epoch always validates."
    )
    rotate_prob: float = Field(
        0.5, ge=0, le=1, description="Probability of a random 90-degree rotation (the only augmentation)."
    )
    dice_threshold: float = Field(0.5, gt=0, lt=1, description="Dice is computed on sigmoid(output) > threshold.")
    input_scaling: Literal["divide_255", "min_max"] = Field(
        "divide_255",
        description="What the network sees: the 8-bit image / 255 (every shipped study), or each image min-max "
        "scaled to [0, 1] as the released pipeline does (train, validation and test, after any perturbation).",
    )
    test_checkpoint: Literal["best", "last"] = Field(
        "best", description="Checkpoint evaluated on the test sets (paper: best by val Dice; released scripts: last)."
    )
    mixed_precision: Literal["none", "bf16", "fp16", "auto"] = Field(
        "none",
        description="Training autocast: none (fp32), bf16 (CUDA or CPU), fp16 (CUDA only, with a loss scaler; "
        "refused on CPU), or auto (bf16 where the GPU or CPU has native bf16, else fp32); true/false mean "
        "bf16/none. Validation and testing stay fp32. The precision used is the run param `precision`. "
        "Changes the numbers slightly, so it is part of the config hash.",
    )
    channels_last: bool | Literal["auto"] = Field(
        False,
        description="Channels-last memory layout for model and inputs (a speed option); auto: on CPUs, and on "
        "CUDA with bf16/fp16 (measured faster on CPU in fp32 and bf16; GPU measurement pending).",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model, falling back to eager on any compiler error (tag "
        "skipsweep.compiled says which ran). Off by default: measured on CPU only (no faster there, 70 s to "
        "compile at 256 px); GPU measurement pending.",
    )
    cudnn_benchmark: bool = Field(
        True,
        description="cuDNN picks the fastest convolution algorithms (fixed shapes make this pay); no-op on CPU. "
        "GPU measurement pending.",
    )
    evaluation_batch_size: int | None = Field(
        None,
        ge=1,
        description="Images per forward pass in validation and testing, all test conditions in one stream; "
        "null = 4 x batch_size. Does not change results.",
    )

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _precision_from_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # study files written before fp16 existed
            return "bf16" if value else "none"
        return value

    @property
    def eval_batch_size(self) -> int:
        """Images per forward pass when predicting (validation and test)."""
        return self.evaluation_batch_size or 4 * self.batch_size


class EvaluationConfig(_Frozen):
    """What is measured on the test sets."""

    surface_metrics: bool = Field(False, description="Also HD95, ASD and NSD (journal metrics).")
    hausdorff_percentile: float = Field(95.0, gt=0, le=100, description="Percentile of the Hausdorff distance.")
    nsd_tolerance: float = Field(1.0, ge=0, description="Normalised surface Dice tolerance, in pixels.")


class ResourcesConfig(_Frozen):
    """What each trial asks the cluster for."""

    cpu: float = Field(1.0, gt=0, description="CPUs per trial.")
    gpu: float = Field(0.25, ge=0, le=1, description="Fraction of a GPU per trial (0.25: four trials share one).")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Cap on trials running at once; null = as resources allow."
    )
    max_failures: int = Field(2, ge=0, description="Retries of a failed trial from its last checkpoint.")


class TrackingConfig(_Frozen):
    """Where runs are logged."""

    uri: str | None = Field(
        None,
        description="MLflow tracking URI; null = $MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the working directory.",
    )
    experiment: str | None = Field(None, description="MLflow experiment; null = the study name.")
    retries: int = Field(
        8,
        ge=1,
        le=50,
        description="Attempts per tracking call before the trial fails (waits double from retry_wait, at most 30 s "
        "each: the default rides out about a minute of a server that is down).",
    )
    retry_wait: float = Field(0.5, gt=0, le=60, description="First wait between attempts, in seconds.")
    system_metrics_seconds: float = Field(
        15.0,
        ge=0,
        description="Sampling interval of MLflow's system metrics (system/cpu_utilization_percentage, memory, GPU "
        "with nvidia-ml-py) in each trial run; 0 = off.",
    )


class StorageConfig(_Frozen):
    """Where files go."""

    results: str = Field(
        "ray_results", description="Ray Tune storage path (a shared file system or object store on a cluster)."
    )
    cache: str = Field(".skipsweep_cache", description="Per-node cache of prepared data sets.")


class StudyConfig(_Frozen):
    """One robustness study: the grid of trials and the protocol they share."""

    study: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        max_length=MAX_STUDY_NAME,
        description="Study name (a folder name: letters, digits, _ . -); the MLflow experiment unless set.",
    )
    description: str = Field("", description="Free text.")
    variants: tuple[str, ...] = Field(min_length=1, description=f"Network variants, from {', '.join(VARIANTS)}.")
    seeds: tuple[int, ...] = Field(min_length=1, description="Training seeds, one trial each (paper: 3).")
    data_seed: int = Field(
        0, ge=0, le=MAX_SEED, description="Seed of everything about the data: crops, masks, splits, noise."
    )
    image_size: int = Field(256, ge=16, description="Square image side in pixels (paper 256).")
    datasets: DatasetsConfig = Field(description="Data sets of the study.")
    test_levels: dict[str, PerturbationConfig] = Field(
        default_factory=dict,
        description="Out-of-domain test levels (hardest, harder, in_domain, easier, easiest) applied to each test set.",
    )
    texture_similarity: TextureSimilarityConfig = Field(default_factory=TextureSimilarityConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    _study_hash: str | None = PrivateAttr(None)  # set on a per-data-set view: it keeps the study's hash

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, variants: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
        if len(set(variants)) != len(variants):
            raise ValueError("a variant is listed twice")
        return variants

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if any(s < 0 for s in seeds):
            raise ValueError(f"seeds must be >= 0, got {list(seeds)}")
        if any(s > MAX_SEED for s in seeds):
            raise ValueError(f"seeds must be <= 2**63 - 1 (a 64-bit signed integer), got {list(seeds)}")
        if len(set(seeds)) != len(seeds):
            raise ValueError("a seed is listed twice")
        return seeds

    @field_validator("study")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if set(name) == {"."}:
            raise ValueError(f"'{name}' is not a study name: it names a folder under storage and cache")
        return name

    @field_validator("test_levels")
    @classmethod
    def _known_levels(
        cls, levels: dict[str, PerturbationConfig], info: ValidationInfo
    ) -> dict[str, PerturbationConfig]:
        unknown = [name for name in levels if name not in TEST_LEVEL_ORDER]
        if unknown:
            raise ValueError(f"unknown test level(s) {unknown}; known: {list(TEST_LEVEL_ORDER)}")
        size = info.data.get("image_size")
        for name, level in levels.items():  # a wider blur is the image's mean, and its kernel fills memory
            if size is not None and level.sigma is not None and level.sigma > size:
                raise ValueError(f"{name}.sigma {level.sigma:g} exceeds image_size {size} px")
        return levels

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        if not self.datasets.names:
            raise ValueError("datasets: at least one data set is needed")
        self._check_depth(self.model, "")
        for name in self.datasets.medical:
            self._check_depth(self._dataset_sections(name).get("model", self.model), f" (datasets.{name}.model)")
        if self.datasets.medical and not self.test_levels:
            raise ValueError(f"test_levels: medical data sets {list(self.datasets.medical)} need at least in_domain")
        fixed_depth = [v for v in self.variants if v in JOURNAL_VARIANTS]
        if fixed_depth and self.image_size % 32:
            raise ValueError(f"image_size {self.image_size} must be divisible by 32 for {fixed_depth}")
        return self

    def _check_depth(self, model: ModelConfig, where: str) -> None:
        depth = 2 ** len(model.strides)
        if self.image_size % depth:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by {depth} for {len(model.strides)} strides{where}"
            )

    def _dataset_sections(self, name: str) -> dict[str, BaseModel]:
        """A data set's ``model`` / ``training`` overrides merged onto the study's, validated."""
        dataset = getattr(self.datasets, name)
        sections = {}
        for key in ("model", "training"):
            partial = getattr(dataset, key, None)
            if not partial:
                continue
            base = getattr(self, key)
            try:
                sections[key] = type(base).model_validate({**base.model_dump(), **partial})
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join([f"datasets.{name}.{key}", *(str(part) for part in first["loc"])])
                raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
        return sections

    def for_dataset(self, name: str) -> StudyConfig:
        """The study as the trials of data set ``name`` see it: its ``model`` / ``training`` overrides applied.

        The view keeps the study's :meth:`config_hash`, so that all runs of one study stay comparable.

        Raises:
            ValueError: when ``name`` is not a data set of the study.
        """
        if name not in self.datasets.names:
            raise ValueError(f"'{name}' is not a data set of study {self.study} {list(self.datasets.names)}")
        sections: dict[str, BaseModel] = self._dataset_sections(name)
        if name == "synthetic_background":  # its trials read it where every synthetic trial reads its data set
            sections["datasets"] = self.datasets.model_copy(update={"synthetic": self.datasets.synthetic_background})
        if not sections:
            return self
        view = self.model_copy(update=sections)
        view._study_hash = self.config_hash()
        return view

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.study

    def config_hash(self) -> str:
        """Hash of everything that defines a trial's result, but not the grid's extent.

        Seeds, variants and alpha levels are the grid (adding a seed keeps the hash);
        resources, tracking and storage are operational, and so is where a medical data
        set lies on disk (its content is pinned by the split hash). Runs with different
        hashes must not be compared.
        """
        if self._study_hash is not None:
            return self._study_hash
        payload = self.model_dump(
            mode="json", exclude={"study", "description", "variants", "seeds", "resources", "tracking", "storage"}
        )
        for dataset in payload["datasets"].values():
            if isinstance(dataset, dict):
                dataset.pop("levels", None)
                dataset.pop("path", None)
        for name in THROUGHPUT_FIELDS:  # how fast, not what: a study may switch them mid-way
            payload["training"].pop(name, None)
        return stable_hash(payload)


def stable_hash(payload: Any, length: int = 16) -> str:
    """A short, deterministic hash of JSON-serialisable content."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _format_location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith("function-")) or "(top level)"


_ENV_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _expand_path(value: str, base: Path, where: str) -> Path:
    """``${VAR}`` / ``$VAR`` and ``~`` expanded; relative paths resolved against ``base``."""

    def variable(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise StudyConfigError(
                f"{where}: environment variable {name} is not set (in '{value}'); "
                f"set it to the folder that holds the data sets, e.g. export {name}=/data"
            )
        return os.environ[name]

    path = Path(_ENV_VARIABLE.sub(variable, value)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_medical_paths(config: StudyConfig, base: Path, source: str) -> StudyConfig:
    """Each medical data set's folder with ``${VAR}`` and ``~`` expanded, resolved against ``base``.

    Whether the folder holds its data set is checked before a study runs, by
    :func:`trainables.datasets.registry.check_data`: the schema reads no data.
    """
    resolved = {}
    for name in config.datasets.medical:
        dataset = getattr(config.datasets, name)
        path = _expand_path(dataset.path, base, f"{source}: datasets.{name}.path")
        resolved[name] = dataset.model_copy(update={"path": str(path)})
    if not resolved:
        return config
    return config.model_copy(update={"datasets": config.datasets.model_copy(update=resolved)})


def _resolve_texture_paths(config: StudyConfig, base: Path, source: str) -> StudyConfig:
    """Texture files of each synthetic data set: ``${VAR}`` and ``~`` expanded, resolved against ``base``.

    That they exist and open as images is checked before a study runs, by
    :func:`trainables.datasets.registry.check_data`.
    """
    updates = {}
    for name in SYNTHETIC_DATASETS:
        synthetic = getattr(config.datasets, name)
        if synthetic is None:
            continue
        resolved = {}
        for key in ("background", "foreground"):
            value = getattr(synthetic, key)
            if value not in BUILTIN_TEXTURES:
                resolved[key] = str(_expand_path(value, base, f"{source}: datasets.{name}.{key}"))
        if resolved:
            updates[name] = synthetic.model_copy(update=resolved)
    if not updates:
        return config
    return config.model_copy(update={"datasets": config.datasets.model_copy(update=updates)})


def parse_study(data: Any, source: str = "<study>", base: Path | None = None) -> StudyConfig:
    """Validate an already-parsed YAML document.

    Args:
        data: the document (a mapping).
        source: the name used in error messages (the file path).
        base: folder that relative texture and data set paths are resolved against.

    Raises:
        StudyConfigError: naming ``source`` and the offending key.
    """
    if not isinstance(data, dict):
        raise StudyConfigError(f"{source}: a study file must be a mapping of keys, got {type(data).__name__}")
    try:
        config = StudyConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        location = _format_location(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key '{first['loc'][-1]}'"
        more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
        raise StudyConfigError(f"{source}: {location}: {message}{more}") from None
    config = _resolve_texture_paths(config, base or Path.cwd(), source)
    return _resolve_medical_paths(config, base or Path.cwd(), source)


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate one study file.

    Raises:
        StudyConfigError: for a missing file, a YAML syntax error (with its line) or
            an invalid key (named).
    """
    path = Path(path)
    if not path.is_file():
        raise StudyConfigError(f"{path}: study file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
        found = "UTF-16 text" if utf16 else f"not UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start})"
        raise StudyConfigError(f"{path}: study files are UTF-8 text, this one is {found}; save it as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise StudyConfigError(f"{path}:{where}: YAML syntax error: {problem}") from None
    except RecursionError:
        raise StudyConfigError(f"{path}: YAML nested too deeply to read (a study file is a few levels deep)") from None
    return parse_study(data, source=str(path), base=path.resolve().parent)


def main(argv: list[str] | None = None) -> int:
    """Validate study files, check the data files they name, print them as resolved JSON; exit status 2 on a bad one."""
    # The data checks read the disk and live in the datasets package, which builds on this module:
    # only this command loads them, never the schema.
    from trainables.datasets.registry import check_data

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m trainables.config STUDY.yaml [...]", file=sys.stderr)
        return 2
    for name in argv:
        try:
            config = load_study(name)
            check_data(config, name)
        except StudyConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps(config.model_dump(mode="json"), indent=2))
    return 0


if __name__ == "__main__":
    # `python -m` runs this file as __main__, a second copy of the module: run the package's, whose
    # StudyConfigError is the one the data checks raise.
    from trainables.config import main as package_main

    raise SystemExit(package_main())
