"""The study: the grid of trials (variants, seeds, data sets, test levels) and the protocol they share."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

import trainables.config.names as names
from trainables.config.base import Section
from trainables.config.datasets import DatasetsConfig
from trainables.config.operations import ResourcesConfig, StorageConfig, TrackingConfig
from trainables.config.protocol import (
    EvaluationConfig,
    ModelConfig,
    PerturbationConfig,
    TextureSimilarityConfig,
    TrainingConfig,
)
from trainables.config.tuning import TuneConfig, TunedValues


def _listed_once(values: tuple, what: str) -> tuple:
    """``values`` unchanged, or a ValueError when one of them is listed twice."""
    if len(set(values)) != len(values):
        raise ValueError(f"a {what} is listed twice")
    return values


class StudyConfig(Section):
    """One robustness study: the grid of trials and the protocol they share."""

    study: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        max_length=names.MAX_STUDY_NAME,
        description="Study name (a folder name: letters, digits, _ . -); the MLflow experiment unless set.",
    )
    description: str = Field("", description="Free text.")
    variants: tuple[str, ...] = Field(min_length=1, description=f"Network variants, from {', '.join(names.VARIANTS)}.")
    seeds: tuple[int, ...] = Field(min_length=1, description="Training seeds, one trial each (paper: 3).")
    data_seed: int = Field(
        0, ge=0, le=names.MAX_SEED, description="Seed of everything about the data: crops, masks, splits, noise."
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
    sweep: dict[str, tuple[Any, ...]] = Field(
        default_factory=dict,
        description=(
            "Sweep axes: a dotted field of model, training or evaluation mapped to the values to try "
            "(e.g. training.learning_rate: [1.0e-4, 1.0e-3]); each combination is a grid axis beside "
            "variant, alpha, seed and data set."
        ),
    )
    tune: TuneConfig | None = Field(
        None, description="The tuning stage (--tune): a search space and the budget each variant gets."
    )
    tuned: dict[str, dict[str, TunedValues]] = Field(
        default_factory=dict,
        description="Values the tuning stage pinned, by variant, then data set (written by --tune).",
    )
    _study_hash: str | None = PrivateAttr(None)  # set on a per-data-set view: it keeps the study's hash

    @model_validator(mode="before")
    @classmethod
    def _expand_skip_subsets(cls, data: Any) -> Any:
        """``unet_skips_*`` in ``variants``: every subset of the study model's skip connections, in its place."""
        if not isinstance(data, dict) or names.ALL_SKIP_SUBSETS not in (data.get("variants") or ()):
            return data
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        levels = len(model.get("strides", ModelConfig.model_fields["strides"].default))
        expanded: list = []
        for variant in data["variants"]:
            expanded += names.all_skip_subsets(levels) if variant == names.ALL_SKIP_SUBSETS else [variant]
        return {**data, "variants": expanded}

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, variants: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in variants if v not in names.VARIANTS and not names.is_skip_subset(v)]
        if unknown:
            known = [*names.VARIANTS, "unet_skips_<0|1 per level>", names.ALL_SKIP_SUBSETS]
            raise ValueError(f"unknown variant(s) {unknown}; known: {known}")
        return _listed_once(variants, "variant")

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if any(s < 0 for s in seeds):
            raise ValueError(f"seeds must be >= 0, got {list(seeds)}")
        if any(s > names.MAX_SEED for s in seeds):
            raise ValueError(f"seeds must be <= 2**63 - 1 (a 64-bit signed integer), got {list(seeds)}")
        return _listed_once(seeds, "seed")

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
        unknown = [name for name in levels if name not in names.TEST_LEVEL_ORDER]
        if unknown:
            raise ValueError(f"unknown test level(s) {unknown}; known: {list(names.TEST_LEVEL_ORDER)}")
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
        ranged = [name for name in self.datasets.medical if self.for_dataset(name).training.train_range > 0]
        if ranged:
            raise ValueError(
                f"training.train_range: a texture range needs synthetic alpha levels; {ranged} are medical data sets"
            )
        learned = [v for v in self.variants if v in names.LEARNED_SKIP_VARIANTS]
        if learned and self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} must be divisible by 16 for {learned}")
        fixed_depth = [v for v in self.variants if v in names.JOURNAL_VARIANTS]
        if fixed_depth and self.image_size % 32:
            raise ValueError(f"image_size {self.image_size} must be divisible by 32 for {fixed_depth}")
        return self

    def _check_field_key(self, key: str, where: str) -> None:
        """``key`` names a field of a sweepable section that no data set sets too; else a ValueError."""
        section, _, name = key.partition(".")
        if section not in names.SWEEPABLE_SECTIONS or not name:
            sweepable = ", ".join(f"{s}.<field>" for s in names.SWEEPABLE_SECTIONS)
            raise ValueError(f"{where}: not a sweepable field (sweepable: {sweepable})")
        if name not in type(getattr(self, section)).model_fields:
            raise ValueError(f"{where}: {section} has no field '{name}'")
        for dataset in self.datasets.names:
            partial = getattr(getattr(self.datasets, dataset), section, None) or {}
            if name in partial:
                raise ValueError(
                    f"{where}: datasets.{dataset}.{section}.{name} sets it too; remove one "
                    "(a per-data-set value would silently replace it)"
                )

    def _check_values(self, assignments: list[tuple[tuple[str, Any], ...]], what: str) -> None:
        """The study with each assignment of dotted fields set still validates; else a ValueError naming it."""
        base = self.model_dump(exclude={"sweep", "tune", "tuned"})
        for assignment in assignments:
            document = {**base, **{section: dict(base[section]) for section in names.SWEEPABLE_SECTIONS}}
            for key, value in assignment:
                section, _, name = key.partition(".")
                document[section][name] = value
            try:
                StudyConfig.model_validate(document)
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-"))
                values = ", ".join(f"{k} = {names.axis_text(v)}" for k, v in assignment)
                message = first["msg"].removeprefix("Value error, ")
                raise ValueError(f"{what} ({values}): {where + ': ' if where else ''}{message}") from None

    @model_validator(mode="after")
    def _check_sweep(self) -> StudyConfig:
        """Each axis names a field of a sweepable section, not also set per data set; each combination validates."""
        if not self.sweep:
            return self
        for key, values in self.sweep.items():
            self._check_field_key(key, f"sweep.{key}")
            if not values:
                raise ValueError(f"sweep.{key}: give at least one value")
            if len({names.axis_text(v) for v in values}) != len(values):
                raise ValueError(f"sweep.{key}: a value is listed twice")
        self._check_values(self.axis_combinations(), "sweep")
        return self

    @model_validator(mode="after")
    def _check_tuning(self) -> StudyConfig:
        """``tune.space`` and ``tuned`` name sweepable fields outside the sweep; every value they allow validates."""
        if self.tune is not None:
            if self.tuned:
                raise ValueError("tune: this study already has tuned values; run --tune on the study it came from")
            for key, search in self.tune.space.items():
                self._check_field_key(key, f"tune.space.{key}")
                if key in ("training.epochs", "training.val_every"):
                    raise ValueError(
                        f"tune.space.{key}: set by the tuning stage (tune.max_epochs; validated every epoch)"
                    )
                if key in self.sweep:
                    raise ValueError(f"tune.space.{key}: also a sweep axis; tune it or sweep it, not both")
                self._check_values([((key, value),) for value in search.extremes()], f"tune.space.{key}")
            alpha = self.tune.train_alpha
            for dataset in self.datasets.names:
                levels = getattr(getattr(self.datasets, dataset), "alphas", None)
                if alpha is not None and levels is not None and round(alpha, 6) not in levels:
                    known = ", ".join(f"{level:g}" for level in levels)
                    raise ValueError(f"tune.train_alpha: {alpha:g} is not a level of datasets.{dataset} ({known})")
        for variant, per_dataset in self.tuned.items():
            if variant not in self.variants:
                raise ValueError(f"tuned.{variant}: not a variant of the study {list(self.variants)}")
            for dataset, tuned in per_dataset.items():
                if dataset not in self.datasets.names:
                    raise ValueError(f"tuned.{variant}.{dataset}: not a data set of the study")
                for key in tuned.values:
                    self._check_field_key(key, f"tuned.{variant}.{dataset}.values.{key}")
                    if key in self.sweep:
                        raise ValueError(f"tuned.{variant}.{dataset}.values.{key}: also a sweep axis")
                assignment = tuple(sorted((key, names.hashable(value)) for key, value in tuned.values.items()))
                self._check_values([assignment], f"tuned.{variant}.{dataset}")
        return self

    def tuned_values(self, variant: str, dataset: str) -> dict[str, Any]:
        """The values tuning pinned for ``variant`` on ``dataset`` (``{}`` when none)."""
        entry = self.tuned.get(variant, {}).get(dataset)
        return {} if entry is None else {key: names.hashable(value) for key, value in entry.values.items()}

    def axis_combinations(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of the sweep axes as ((key, value), ...), keys sorted, values in a canonical order;
        ``[()]`` without a sweep."""
        keys = sorted(self.sweep)
        values = [sorted((names.hashable(v) for v in self.sweep[key]), key=names.axis_text) for key in keys]
        return [tuple(zip(keys, combination, strict=True)) for combination in itertools.product(*values)]

    def with_axes(self, axes: Mapping[str, Any]) -> StudyConfig:
        """The study with one combination of sweep values set in its sections; it keeps the study's config hash."""
        if not axes:
            return self
        sections: dict[str, dict] = {}
        for key, value in axes.items():
            section, _, name = key.partition(".")
            sections.setdefault(section, getattr(self, section).model_dump())[name] = value
        updated = {key: type(getattr(self, key)).model_validate(fields) for key, fields in sections.items()}
        view = self.model_copy(update=updated)
        view._study_hash = self.config_hash()
        return view

    def for_trial(self, dataset: str, axes: Mapping[str, Any] | None = None) -> StudyConfig:
        """The study as one trial sees it: its data set's overrides (:meth:`for_dataset`), then its sweep values."""
        return self.for_dataset(dataset).with_axes(axes or {})

    def _check_depth(self, model: ModelConfig, where: str) -> None:
        for variant in self.variants:
            if names.is_skip_subset(variant) and len(names.skip_flags(variant)) != len(model.strides):
                raise ValueError(
                    f"variants: {variant} has {len(names.skip_flags(variant))} skip flags for "
                    f"{len(model.strides)} levels (one per stride){where}"
                )
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

        Seeds, variants, alpha levels and sweep axes are the grid (adding a seed or a swept value keeps
        the hash: each run records its own values as params), and so are tuned values (each run records
        its own); the tuning stage itself never enters a run of the grid;
        resources, tracking and storage are operational, and so is where a medical data
        set lies on disk and in which layout (its content is pinned by the split hash).
        Runs with different hashes must not be compared.
        """
        if self._study_hash is not None:
            return self._study_hash
        payload = self.model_dump(
            mode="json",
            exclude={
                "study",
                "description",
                "variants",
                "seeds",
                "sweep",
                "tune",
                "tuned",
                "resources",
                "tracking",
                "storage",
            },  # fmt: skip
        )
        for dataset in payload["datasets"].values():
            if isinstance(dataset, dict):
                dataset.pop("levels", None)
                dataset.pop("path", None)
                dataset.pop("layout", None)  # how the folder is read; what was read is in the split hash
        for name in names.THROUGHPUT_FIELDS:  # how fast, not what: a study may switch them mid-way
            payload["training"].pop(name, None)
        if payload["training"].get("train_range") == 0:  # added later: at its default, a study's hash is as it was
            payload["training"].pop("train_range")
        return names.stable_hash(payload)
