"""The synthetic data set prepared into the cache (every alpha level, with TS), and the arrays of one trial."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.config import StudyConfig
from trainables.datasets.arrays import TestCondition, TrialData, input_images, split_manifest
from trainables.datasets.cache import cached_directory
from trainables.datasets.perturb import perturbed_conditions
from trainables.datasets.synthetic.generate import blend, generate_base, texture_fingerprint
from trainables.datasets.texture import summarise, texture_similarities
from trainables.schema import alpha_condition, format_alpha

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the generator changes what it writes


@dataclass(frozen=True)
class SyntheticData:
    """All alpha levels of the synthetic data set, as read from the cache."""

    alphas: tuple[float, ...]  # paper convention, sorted
    images: np.ndarray  # (levels, N, H, W) uint8
    masks: np.ndarray  # (N, H, W) uint8, the same at every level
    ts: np.ndarray  # (levels, N) texture similarity of each image
    split: dict[str, np.ndarray]  # "train" / "val" / "test" -> image indices
    image_ids: tuple[str, ...]

    def level_index(self, alpha: float) -> int:
        """Index of an alpha level; ValueError naming the levels when it is not one."""
        for index, value in enumerate(self.alphas):
            if abs(value - alpha) < 1e-6:
                return index
        raise ValueError(f"alpha {alpha} is not a level of this data set {list(self.alphas)}")


def synthetic_cache_key(config: StudyConfig) -> dict:
    """Everything the prepared synthetic data depends on."""
    synthetic = config.datasets.synthetic
    payload = synthetic.model_dump(mode="json", exclude={"alpha_convention", "levels"})
    payload["background"] = texture_fingerprint(synthetic.background)
    payload["foreground"] = texture_fingerprint(synthetic.foreground)
    return {
        "version": CACHE_VERSION,
        "dataset": "synthetic",
        "alphas": list(synthetic.alphas),
        "image_size": config.image_size,
        "data_seed": config.data_seed,
        "synthetic": payload,
        "texture_similarity": config.texture_similarity.model_dump(mode="json"),
    }


def _build_synthetic(config: StudyConfig, folder: Path) -> None:
    synthetic = config.datasets.synthetic
    base = generate_base(synthetic, config.image_size, config.data_seed)
    levels = []
    ts = []
    for number, alpha in enumerate(synthetic.alphas, start=1):
        images = blend(base, alpha, synthetic.direction)
        levels.append(images)
        ts.append(texture_similarities(images, base.masks, config.texture_similarity))
        log.info("synthetic data: level %d/%d (alpha %s) ready", number, len(synthetic.alphas), format_alpha(alpha))
    np.save(folder / "images.npy", np.stack(levels))
    np.save(folder / "masks.npy", base.masks)
    np.save(folder / "ts.npy", np.stack(ts))
    meta = {
        "alphas": list(synthetic.alphas),
        "image_ids": list(base.image_ids),
        "split": {name: [int(i) for i in indices] for name, indices in base.split.items()},
        "ts_summary": {format_alpha(a): summarise(t) for a, t in zip(synthetic.alphas, ts, strict=True)},
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))


def prepare_synthetic(config: StudyConfig, cache_root: str | Path) -> Path:
    """Build (once per machine) and return the cache folder of the study's synthetic data.

    ``config`` is the study as :meth:`StudyConfig.for_dataset` gives it: ``datasets.synthetic`` is the
    data set prepared (``synthetic_background`` is seen there too).
    """
    if config.datasets.synthetic is None:
        raise ValueError("the study has no synthetic data set")
    return cached_directory(cache_root, "synthetic", synthetic_cache_key(config), lambda f: _build_synthetic(config, f))


def load_synthetic(folder: str | Path) -> SyntheticData:
    """Read a prepared synthetic data set."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    return SyntheticData(
        alphas=tuple(meta["alphas"]),
        images=np.load(folder / "images.npy"),
        masks=np.load(folder / "masks.npy"),
        ts=np.load(folder / "ts.npy"),
        split={name: np.asarray(indices, dtype=np.int64) for name, indices in meta["split"].items()},
        image_ids=tuple(meta["image_ids"]),
    )


def train_levels(alphas: tuple[float, ...], train_alpha: float, train_range: float) -> tuple[float, ...]:
    """The alpha levels a trial at ``train_alpha`` trains on: those of ``alphas`` within ``train_range`` of it."""
    return tuple(alpha for alpha in alphas if abs(alpha - train_alpha) <= train_range + 1e-9)


def _mixed(images: np.ndarray, levels: list[int], indices: np.ndarray) -> np.ndarray:
    """``images[levels[i % k], indices[i]]`` for each position i: equal shares of the levels, the same crops."""
    chosen = np.asarray([levels[i % len(levels)] for i in range(len(indices))], dtype=np.int64)
    return images[chosen, indices]


def synthetic_trial_data(config: StudyConfig, train_alpha: float, cache_root: str | Path) -> TrialData:
    """Training at ``train_alpha`` (or on its texture range: ``training.train_range``); tests at every alpha
    level and every test level."""
    data = load_synthetic(prepare_synthetic(config, cache_root))
    level = data.level_index(train_alpha)
    mixed = [data.level_index(alpha) for alpha in train_levels(data.alphas, train_alpha, config.training.train_range)]
    scaling = config.training.input_scaling
    train, val, test = (data.split[name] for name in ("train", "val", "test"))
    test_ids = tuple(data.image_ids[i] for i in test)
    conditions = [
        TestCondition(
            alpha_condition(alpha),
            alpha,
            input_images(data.images[index, test], scaling),
            data.masks[test],
            data.ts[index, test],
            test_ids,
        )
        for index, alpha in enumerate(data.alphas)
    ]
    # Perturbation levels carry test_alpha NaN: they belong to the out-of-domain table, not the matrix.
    in_domain = input_images(data.images[level, test])
    conditions += perturbed_conditions(config, in_domain, data.masks[test], float("nan"), test_ids)
    return TrialData(
        train_images=input_images(_mixed(data.images, mixed, train), scaling),
        train_masks=data.masks[train],
        val_images=input_images(_mixed(data.images, mixed, val), scaling),
        val_masks=data.masks[val],
        conditions=tuple(conditions),
        manifest=split_manifest("synthetic", data.image_ids, data.split),
    )


def synthetic_report(config: StudyConfig, name: str, cache_root: str | Path) -> str:
    """Prepare the data set and describe it: its cache folder and TS per alpha level."""
    folder = prepare_synthetic(config, cache_root)
    data = load_synthetic(folder)
    lines = [f"{name} data: {folder}", "alpha   TS mean   TS std   (alpha = foreground share; 1 = easiest)"]
    for alpha, ts in zip(data.alphas, data.ts, strict=True):
        stats = summarise(ts)
        lines.append(f"{format_alpha(alpha):>5}   {stats['mean']:7.3f}   {stats['std']:6.3f}")
    return "\n".join(lines)
