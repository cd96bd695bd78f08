"""The key of one trial, light enough to import without torch (the orchestrator's dry run uses it)."""

from __future__ import annotations

from dataclasses import dataclass

from trainables.config import stable_hash
from trainables.schema import KEY_TAGS, format_alpha


@dataclass(frozen=True)
class TrialSpec:
    """The key of one trial; ``train_alpha`` is None for medical data sets."""

    study: str
    dataset: str
    variant: str
    train_alpha: float | None
    seed: int

    @property
    def trial_id(self) -> str:
        """Stable id: a hash of the key, the same whatever order the study lists things in."""
        alpha = "" if self.train_alpha is None else format_alpha(self.train_alpha)
        return stable_hash([self.study, self.dataset, self.variant, alpha, self.seed], length=12)

    @property
    def run_name(self) -> str:
        """``unet a0.30 s1 synthetic`` (``unet s1 busi`` for a medical data set): the factors that tell runs apart
        first, so that the names stay distinct where MLflow's runs table cuts them (~24 characters)."""
        alpha = "" if self.train_alpha is None else f" a{format_alpha(self.train_alpha)}"
        return f"{self.variant}{alpha} s{self.seed} {self.dataset}"

    def params(self) -> dict[str, str]:
        """The grid factors as run params: ``train_alpha`` a plain number (``0.1``; none for a medical data set).

        The tags keep the key for search (``tags.train_alpha = '0.10'``); MLflow's chart and compare
        views offer params only, and read a param that is a number as one.
        """
        alpha = {} if self.train_alpha is None else {"train_alpha": f"{self.train_alpha:g}"}
        return {"variant": self.variant, "dataset": self.dataset, **alpha, "seed": str(self.seed)}

    def tags(self) -> dict[str, str]:
        """The key fields as run tags (``train_alpha`` empty for a medical data set)."""
        alpha = "" if self.train_alpha is None else format_alpha(self.train_alpha)
        return dict(zip(KEY_TAGS, (self.study, self.dataset, self.variant, alpha, str(self.seed)), strict=True))
