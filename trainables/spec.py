"""The key of one trial, light enough to import without torch (the orchestrator's dry run uses it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from trainables.config import stable_hash
from trainables.config.names import axis_text, hashable
from trainables.schema import KEY_TAGS, SWEEP_TAG, format_alpha


@dataclass(frozen=True)
class TrialSpec:
    """The key of one trial; ``train_alpha`` is None for medical data sets.

    ``axes`` holds the trial's values of the study's sweep axes, ``(("training.learning_rate", 0.001), ...)``
    with the keys sorted; empty without a sweep (and then the id is what it was before sweeps existed).
    ``tuned`` holds the values the study's tuning stage pinned for this variant and data set, the same way
    (empty for a study that was not tuned, and then the id is unchanged).
    """

    study: str
    dataset: str
    variant: str
    train_alpha: float | None
    seed: int
    axes: tuple[tuple[str, Any], ...] = ()
    tuned: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:  # Tune's config hands lists back: keep the key hashable and canonical
        for name in ("axes", "tuned"):
            object.__setattr__(self, name, tuple(sorted((str(k), hashable(v)) for k, v in getattr(self, name))))

    @property
    def trial_id(self) -> str:
        """Stable id: a hash of the key, the same whatever order the study lists things in."""
        alpha = "" if self.train_alpha is None else format_alpha(self.train_alpha)
        key = [self.study, self.dataset, self.variant, alpha, self.seed]
        if self.axes:
            key += [[k, v] for k, v in self.axes]
        if self.tuned:
            key += [["tuned", k, v] for k, v in self.tuned]
        return stable_hash(key, length=12)

    @property
    def run_name(self) -> str:
        """``unet a0.30 s1 synthetic`` (``unet s1 busi`` for a medical data set): the factors that tell runs apart
        first, so that the names stay distinct where MLflow's runs table cuts them (~24 characters); sweep
        values follow the seed (``unet a0.30 s1 learning_rate=0.001 synthetic``)."""
        alpha = "" if self.train_alpha is None else f" a{format_alpha(self.train_alpha)}"
        axes = "".join(f" {key.rpartition('.')[2]}={axis_text(value)}" for key, value in self.axes)
        return f"{self.variant}{alpha} s{self.seed}{axes} {self.dataset}"

    @property
    def axis_values(self) -> dict[str, Any]:
        """The sweep values by dotted key (``{}`` without a sweep)."""
        return dict(self.axes)

    @property
    def field_values(self) -> dict[str, Any]:
        """The study fields this trial sets over the study's own: its sweep values, then its tuned values."""
        return {**dict(self.axes), **dict(self.tuned)}

    def sweep_tag(self) -> dict[str, str]:
        """The sweep values as one run tag (JSON), which the export turns into ``sweep.<key>`` columns."""
        return {SWEEP_TAG: json.dumps(self.axis_values, sort_keys=True)} if self.axes else {}

    def params(self) -> dict[str, str]:
        """The grid factors as run params: ``train_alpha`` a plain number (``0.1``; none for a medical data set),
        and each sweep value under its dotted key (``training.learning_rate``: ``0.001``).

        The tags keep the key for search (``tags.train_alpha = '0.10'``); MLflow's chart and compare
        views offer params only, and read a param that is a number as one.
        """
        alpha = {} if self.train_alpha is None else {"train_alpha": f"{self.train_alpha:g}"}
        axes = {key: axis_text(value) for key, value in (*self.axes, *self.tuned)}  # by the dotted key
        return {"variant": self.variant, "dataset": self.dataset, **alpha, "seed": str(self.seed), **axes}

    def tags(self) -> dict[str, str]:
        """The key fields as run tags (``train_alpha`` empty for a medical data set)."""
        alpha = "" if self.train_alpha is None else format_alpha(self.train_alpha)
        return dict(zip(KEY_TAGS, (self.study, self.dataset, self.variant, alpha, str(self.seed)), strict=True))
