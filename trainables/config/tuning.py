"""The tuning stage of a study (``tune:``) and the values it pinned (``tuned:``).

``python -m orchestrator.run --config X --tune`` searches ``tune.space`` once per variant and data set,
on the validation split only, with an equal budget for every variant (``samples`` configurations of at
most ``max_epochs`` each, poor ones stopped early by ASHA), and writes a resolved study file whose
``tuned:`` section pins each variant's best values; running that file runs the final grid.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

import trainables.config.names as names
from trainables.config.base import Section


class SearchRange(Section):
    """Where one study field is searched: exactly one of ``uniform``, ``loguniform`` or ``choice``."""

    uniform: tuple[float, float] | None = Field(None, description="[low, high]: any value between, evenly.")
    loguniform: tuple[float, float] | None = Field(
        None, description="[low, high], low > 0: evenly on a log scale (learning rates)."
    )
    choice: tuple[Any, ...] | None = Field(None, min_length=1, description="The values to choose from.")

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        given = [kind for kind in ("uniform", "loguniform", "choice") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of uniform, loguniform, choice (got {given or 'none'})")
        for kind in ("uniform", "loguniform"):
            bounds = getattr(self, kind)
            if bounds is None:
                continue
            low, high = bounds
            if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
                raise ValueError(f"{kind}: [low, high] must be finite with low < high, got [{low:g}, {high:g}]")
            if kind == "loguniform" and low <= 0:
                raise ValueError(f"loguniform: low must be > 0, got {low:g}")
        if self.choice is not None and len({names.axis_text(value) for value in self.choice}) != len(self.choice):
            raise ValueError("choice: a value is listed twice")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in ("uniform", "loguniform", "choice") if getattr(self, kind) is not None)

    def extremes(self) -> tuple[Any, ...]:
        """The values the study is validated with: a range's two ends, or every choice."""
        return tuple(getattr(self, self.kind))


class TuneConfig(Section):
    """The tuning stage: a search space over study fields and the budget each variant gets."""

    space: dict[str, SearchRange] = Field(
        min_length=1,
        description="Dotted model / training / evaluation fields mapped to their range, "
        "e.g. training.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}.",
    )
    samples: int = Field(8, ge=1, le=10_000, description="Configurations tried per variant and data set.")
    max_epochs: int = Field(
        20, ge=1, le=names.MAX_EPOCHS, description="Epochs of a configuration that is never stopped."
    )
    grace_epochs: int = Field(2, ge=1, description="ASHA: epochs every configuration gets before it may be stopped.")
    reduction_factor: float = Field(3.0, gt=1, description="ASHA: the share kept at each rung is 1 / this.")
    train_alpha: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Synthetic data sets: the alpha level tuning trains at (one of the data set's levels); "
        "default: the middle of its levels.",
    )
    seed: int = Field(0, ge=0, le=names.MAX_SEED, description="Training seed of every tuning trial and the search's.")
    search: Literal["auto", "optuna", "random"] = Field(
        "auto", description="Ray Tune's OptunaSearch, its random search, or auto: Optuna when it is installed."
    )
    include_defaults: bool = Field(
        True,
        description="Try the study's own values first: the baseline that 'what tuning gained' is measured against.",
    )
    max_concurrent_trials: int | None = Field(None, ge=1, description="Tuning trials at once (default: what fits).")

    @model_validator(mode="after")
    def _grace_within_budget(self) -> TuneConfig:
        if self.grace_epochs > self.max_epochs:
            raise ValueError(f"grace_epochs {self.grace_epochs} exceeds max_epochs {self.max_epochs}")
        return self


class TunedValues(Section):
    """What the tuning stage chose for one variant on one data set, and what it measured (the provenance)."""

    values: dict[str, Any] = Field(min_length=1, description="Dotted study fields mapped to the tuned value.")
    tuning_run: str = Field("", description="The MLflow run id of the tuning (its children are the configurations).")
    val_dice: float | None = Field(None, description="Best validation Dice of the chosen configuration in tuning.")
    default_val_dice: float | None = Field(
        None, description="Best validation Dice of the study's own values in the same tuning (same budget)."
    )
    epochs: int | None = Field(None, ge=0, description="Epochs the chosen configuration trained in tuning.")
    train_alpha: float | None = Field(None, description="The alpha level tuning trained at (synthetic data sets).")
