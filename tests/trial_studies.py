"""The one tiny study of the tests, as a raw dict: one small synthetic data set, a three-level model, two epochs.

Tests that need more (two alpha levels, a test condition, a whole sweep) change it with
:func:`small_study`; ``parse_study(small_study(...))`` gives the validated study.
"""

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
    """:data:`SMALL_STUDY` named ``name``, with ``changes`` merged in key by key (see :func:`merged`).

    Example: ``small_study("fp16", training={"epochs": 1, "mixed_precision": "fp16"})`` keeps ``batch_size``.
    """
    return merged({"study": name, **SMALL_STUDY}, changes)


def merged(base: dict, *changes: dict) -> dict:
    """A copy of ``base`` with ``changes`` merged in, in order: a dict into a dict at any depth, else replaced."""
    result = copy.deepcopy(base)
    for change in changes:
        for key, value in change.items():
            both_dicts = isinstance(value, dict) and isinstance(result.get(key), dict)
            result[key] = merged(result[key], value) if both_dicts else copy.deepcopy(value)
    return result
