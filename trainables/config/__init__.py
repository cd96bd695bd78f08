"""Study files: one YAML document parsed into frozen, typed objects.

Every number of the study protocol is a field here, with its
description; nothing downstream reads a raw dict. A study file is refused before
any work starts, with a message that names the file and the key.

- ``names``: variant, data-set and test-level names, limits, :func:`stable_hash` (no pydantic, no I/O).
- ``base``: :class:`Section`, the frozen base of every section (unknown keys refused).
- ``datasets``: the synthetic and medical data sets (the alpha convention is stated there).
- ``protocol``: model, training, evaluation, test levels, texture similarity.
- ``operations``: resources, tracking, storage.
- ``study``: :class:`StudyConfig`, its per-data-set views and its config hash.
- ``loading``: :func:`load_study` / :func:`parse_study`, YAML and ``${VAR}`` expansion.

The schema reads no data: ``trainables.datasets.registry.check_data`` checks the data before a
study runs, and only the command below loads it.

    python -m trainables.config conf/quick.yaml   # validate and print a study
"""

from __future__ import annotations

from trainables.config.datasets import (
    BusiConfig,
    DatasetsConfig,
    GlasConfig,
    HeartConfig,
    MaskConfig,
    MedicalDatasetConfig,
    MedicalSplitConfig,
    SpleenConfig,
    SplitConfig,
    SyntheticConfig,
    VolumeDatasetConfig,
)
from trainables.config.loading import StudyConfigError, load_study, parse_study
from trainables.config.names import (
    BUILTIN_TEXTURES,
    JOURNAL_VARIANTS,
    MAX_EPOCHS,
    MAX_SEED,
    MAX_STUDY_NAME,
    MEDICAL_DATASETS,
    MICCAI_VARIANTS,
    SYNTHETIC_DATASETS,
    TEST_LEVEL_ORDER,
    THROUGHPUT_FIELDS,
    VARIANTS,
    format_alpha,
    stable_hash,
)
from trainables.config.operations import ResourcesConfig, StorageConfig, TrackingConfig
from trainables.config.protocol import (
    EvaluationConfig,
    ModelConfig,
    PerturbationConfig,
    TextureSimilarityConfig,
    TrainingConfig,
)
from trainables.config.study import StudyConfig

__all__ = [
    "BUILTIN_TEXTURES",
    "JOURNAL_VARIANTS",
    "MAX_EPOCHS",
    "MAX_SEED",
    "MAX_STUDY_NAME",
    "MEDICAL_DATASETS",
    "MICCAI_VARIANTS",
    "SYNTHETIC_DATASETS",
    "TEST_LEVEL_ORDER",
    "THROUGHPUT_FIELDS",
    "VARIANTS",
    "BusiConfig",
    "DatasetsConfig",
    "EvaluationConfig",
    "GlasConfig",
    "HeartConfig",
    "MaskConfig",
    "MedicalDatasetConfig",
    "MedicalSplitConfig",
    "ModelConfig",
    "PerturbationConfig",
    "ResourcesConfig",
    "SplitConfig",
    "SpleenConfig",
    "StorageConfig",
    "StudyConfig",
    "StudyConfigError",
    "SyntheticConfig",
    "TextureSimilarityConfig",
    "TrackingConfig",
    "TrainingConfig",
    "VolumeDatasetConfig",
    "format_alpha",
    "load_study",
    "parse_study",
    "stable_hash",
]
