"""Raw study dicts for tests that run or refuse a tiny trial: one small synthetic data set, a three-level model."""

from __future__ import annotations

import copy

SMALL_STUDY = {
    "variants": ["unet"],
    "seeds": [0],
    "image_size": 32,
    "model": {"channels": [4, 8, 16], "strides": [2, 2]},
    "datasets": {"synthetic": {"levels": [1.0], "split": {"train": 8, "val": 4, "test": 4}}},
    "texture_similarity": {"lbp_method": "uniform"},
    "training": {"epochs": 2, "batch_size": 4},
}


def small_study(name: str, **changes) -> dict:
    """:data:`SMALL_STUDY` named ``name``, with ``changes`` merged in key by key (a dict into a dict, at any depth).

    Example: ``small_study("fp16", training={"epochs": 1, "mixed_precision": "fp16"})`` keeps ``batch_size``.
    """
    return _merged({"study": name, **SMALL_STUDY}, changes)


def _merged(base: dict, changes: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        both_dicts = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if both_dicts else copy.deepcopy(value)
    return merged
