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
        alpha = "" if self.train_alpha is None else f"/a{format_alpha(self.train_alpha)}"
        return f"{self.variant}/{self.dataset}{alpha}/s{self.seed}"

    def tags(self) -> dict[str, str]:
        """The key fields as run tags (``train_alpha`` empty for a medical data set)."""
        alpha = "" if self.train_alpha is None else format_alpha(self.train_alpha)
        return dict(zip(KEY_TAGS, (self.study, self.dataset, self.variant, alpha, str(self.seed)), strict=True))
