"""The protocol every trial of a study shares: network, training, evaluation, test levels, texture similarity.

Every number of the study protocol is a field here, with its description.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from trainables.config.base import Section
from trainables.config.names import MAX_EPOCHS


class TextureSimilarityConfig(Section):
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


class PerturbationConfig(Section):
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


class ModelConfig(Section):
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


class TrainingConfig(Section):
    """The training protocol, the same for every variant."""

    epochs: int = Field(100, ge=1, description=f"Epochs, no early stopping (paper 100; at most {MAX_EPOCHS}).")
    batch_size: int = Field(8, ge=1, description="Batch size (released code 8).")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate, constant (synthetic 1e-3, medical 1e-2).")
    val_every: int = Field(
        2, ge=1, description="Validate every this many epochs (paper 2); the last epoch always validates."
    )
    rotate_prob: float = Field(
        0.5, ge=0, le=1, description="Probability of a random 90-degree rotation (the only augmentation)."
    )
    dice_threshold: float = Field(0.5, gt=0, lt=1, description="Dice is computed on sigmoid(output) > threshold.")
    train_range: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Synthetic data: train a trial at alpha a on every alpha level of its data set within "
        "[a - train_range, a + train_range] (the texture range of its training set), in equal shares of the same "
        "crops (image i at the i-th level in turn); 0 = its own level alone (the paper). Validation is mixed the "
        "same way; testing is at every level as always, in-domain meaning level a. Sweepable: narrow vs wide.",
    )
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
        "CUDA with bf16/fp16.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model, falling back to eager on any compiler error (tag "
        "skipsweep.compiled says which ran). Compiling takes a minute or more per trial.",
    )
    cudnn_benchmark: bool = Field(
        True,
        description="cuDNN picks the fastest convolution algorithms (fixed shapes make this pay); no-op on CPU.",
    )
    evaluation_batch_size: int | None = Field(
        None,
        ge=1,
        description="Images per forward pass in validation and testing, all test conditions in one stream; "
        "null = 4 x batch_size. Does not change results.",
    )

    @field_validator("epochs")
    @classmethod
    def _plausible_epochs(cls, epochs: int) -> int:
        if epochs > MAX_EPOCHS:
            raise ValueError(f"{epochs} epochs is implausible: at most {MAX_EPOCHS} (the paper trains 100)")
        return epochs

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


class EvaluationConfig(Section):
    """What is measured on the test sets."""

    surface_metrics: bool = Field(False, description="Also HD95, ASD and NSD (journal metrics).")
    hausdorff_percentile: float = Field(95.0, gt=0, le=100, description="Percentile of the Hausdorff distance.")
    nsd_tolerance: float = Field(1.0, ge=0, description="Normalised surface Dice tolerance, in pixels.")
