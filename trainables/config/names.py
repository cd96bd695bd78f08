"""The study vocabulary: variant, data-set and test-level names, limits, and the content hash.

Plain names and constants that the schemas, the data sets and the orchestrator share; no
pydantic, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from trainables.schema import SKIP_SUBSET_PREFIX as SKIP_SUBSET_PREFIX  # the MLflow layout's vocabulary
from trainables.schema import format_alpha as format_alpha  # its old home, kept for existing imports
from trainables.schema import is_skip_subset as is_skip_subset

BUILTIN_TEXTURES = ("grass", "gravel", "brick")
MICCAI_VARIANTS = ("noskip_unet", "unet", "attention_unet")
JOURNAL_VARIANTS = ("vnet", "noskip_vnet", "unet_plus_plus")
LEARNED_SKIP_VARIANTS = ("udtransnet",)  # UDTransNet (Wang et al. 2024): skips replaced by attention; fixed widths
VARIANTS = MICCAI_VARIANTS + JOURNAL_VARIANTS + LEARNED_SKIP_VARIANTS
ALL_SKIP_SUBSETS = "unet_skips_*"  # in a study's variants: every subset of the model's levels (2**levels variants)
TEST_LEVEL_ORDER = ("hardest", "harder", "in_domain", "easier", "easiest")
MEDICAL_DATASETS = ("busi", "spleen", "heart", "glas")
SYNTHETIC_DATASETS = ("synthetic", "synthetic_background")  # trained per alpha level
THROUGHPUT_FIELDS = ("channels_last", "compile", "cudnn_benchmark", "evaluation_batch_size")  # not hashed
MAX_SEED = 2**63 - 1  # seeds are int64 in runs.parquet; torch takes up to 2**64 - 1, numpy's legacy seed 2**32 - 1
MAX_STUDY_NAME = 100  # one path component under storage and cache, with room for Ray's own suffixes
MAX_EPOCHS = 100_000  # 1000x the paper's 100: a larger value is a typo, not a protocol
SWEEPABLE_SECTIONS = ("model", "training", "evaluation")  # a sweep axis is <section>.<field> of one of them


def hashable(value: Any) -> Any:
    """A sweep value as a dict key and a set member: lists (YAML, Tune's config) become tuples, all the way down."""
    if isinstance(value, list | tuple):
        return tuple(hashable(item) for item in value)
    return value


def axis_text(value: Any) -> str:
    """A sweep value as run names and tables show it: ``0.001``, ``[16,32,64]``."""
    return json.dumps(value, separators=(",", ":"), default=str)


def stable_hash(payload: Any, length: int = 16) -> str:
    """A short, deterministic hash of JSON-serialisable content."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def skip_flags(variant: str) -> tuple[bool, ...]:
    """The kept (True) and dropped skip connections of a skip-subset variant, shallowest level first."""
    return tuple(flag == "1" for flag in variant.removeprefix(SKIP_SUBSET_PREFIX))


def all_skip_subsets(levels: int) -> tuple[str, ...]:
    """Every skip-subset variant of a U-Net with ``levels`` skip connections, from none to all kept."""
    return tuple(f"{SKIP_SUBSET_PREFIX}{index:0{levels}b}" for index in range(2**levels))
