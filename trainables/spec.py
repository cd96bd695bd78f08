"""The key of one trial, light enough to import without torch (the orchestrator's dry run uses it)."""

from __future__ import annotations

from dataclasses import dataclass

from trainables.config import format_alpha, stable_hash


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
        return {
            "study": self.study,
            "dataset": self.dataset,
            "variant": self.variant,
            "train_alpha": "" if self.train_alpha is None else format_alpha(self.train_alpha),
            "seed": str(self.seed),
        }
