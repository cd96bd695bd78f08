"""Prepared data: the cached synthetic data set and the arrays one trial needs (medical data: trainables.medical).

python -m trainables.data prepare --config conf/quick.yaml                    # every data set of the study
python -m trainables.data prepare --config conf/example_medical_tiny.yaml     # slices per split, TS per test level
python -m trainables.data preview --config conf/quick.yaml --out preview.png
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.cache import cached_directory
from trainables.config import (
    MEDICAL_DATASETS,
    SYNTHETIC_DATASETS,
    TEST_LEVEL_ORDER,
    StudyConfig,
    StudyConfigError,
    load_study,
    stable_hash,
)
from trainables.perturb import perturb_set
from trainables.schema import alpha_condition, format_alpha
from trainables.synthetic import blend, generate_base, texture_fingerprint
from trainables.texture import summarise, texture_similarities

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
    """Build (once per machine) and return the cache folder of the study's synthetic data."""
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


@dataclass(frozen=True)
class TestCondition:
    """One test set a trained model is evaluated on."""

    name: str  # "alpha_0.30" or a test level such as "harder"
    test_alpha: float  # the alpha tested on; NaN for perturbation levels
    images: np.ndarray  # (n, H, W) float32 in [0, 1]
    masks: np.ndarray  # (n, H, W) uint8
    ts: np.ndarray  # (n,) texture similarity of each image as tested
    image_ids: tuple[str, ...]


@dataclass(frozen=True)
class TrialData:
    """The arrays of one trial: training and validation sets and every test condition."""

    train_images: np.ndarray  # (n, H, W) float32 in [0, 1]
    train_masks: np.ndarray  # (n, H, W) uint8
    val_images: np.ndarray
    val_masks: np.ndarray
    conditions: tuple[TestCondition, ...]
    manifest: dict  # dataset, train / val / test image ids, hash


def split_manifest(
    dataset: str,
    image_ids: tuple[str, ...],
    split: dict[str, np.ndarray],
    patients: dict[str, list[str]] | None = None,
) -> dict:
    """Which image ids (and, for medical data, which patients) are train / val / test, with a hash of exactly that."""
    manifest = {"dataset": dataset, **{name: [image_ids[i] for i in split[name]] for name in ("train", "val", "test")}}
    if patients is not None:
        manifest["patients"] = {name: list(patients[name]) for name in ("train", "val", "test")}
    manifest["hash"] = stable_hash(
        {k: manifest[k] for k in ("dataset", "train", "val", "test", "patients") if k in manifest}
    )
    return manifest


def input_images(images: np.ndarray, scaling: str = "divide_255") -> np.ndarray:
    """What the network sees, float32 in [0, 1] (N, H, W).

    Args:
        images: uint8 images (divided by 255 first) or float images in [0, 1].
        scaling: ``divide_255`` keeps that; ``min_max`` maps each image's own minimum to 0 and
            maximum to 1, like the released pipeline's ``ScaleIntensityd`` (a flat image becomes 0).
    """
    images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    if scaling == "divide_255":
        return images
    if scaling != "min_max":
        raise ValueError(f"unknown input scaling '{scaling}'")
    low = images.min(axis=(-2, -1), keepdims=True)
    span = images.max(axis=(-2, -1), keepdims=True) - low
    return np.where(span > 0, (images - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def level_seed(data_seed: int, level: str) -> int:
    """Noise seed of a test level: a function of the data seed only, never of variant or seed."""
    return int(np.random.SeedSequence([data_seed, 7, TEST_LEVEL_ORDER.index(level)]).generate_state(1)[0])


def perturbed_conditions(
    config: StudyConfig, images: np.ndarray, masks: np.ndarray, test_alpha: float, image_ids: tuple[str, ...]
) -> list[TestCondition]:
    """The study's out-of-domain test levels applied to one in-domain test set (float images in [0, 1]).

    The perturbation works on the image / 255, as the released code's does on its 8-bit files; the
    study's ``training.input_scaling`` is applied afterwards (TS is measured before it).
    """
    conditions = []
    for level in TEST_LEVEL_ORDER:
        if level not in config.test_levels:
            continue
        perturbed = perturb_set(images, masks, config.test_levels[level], level_seed(config.data_seed, level))
        ts = texture_similarities(perturbed, masks, config.texture_similarity)
        shown = input_images(perturbed, config.training.input_scaling)
        conditions.append(TestCondition(level, test_alpha, shown, masks, ts, image_ids))
    return conditions


def synthetic_trial_data(config: StudyConfig, train_alpha: float, cache_root: str | Path) -> TrialData:
    """Training at ``train_alpha``; tests at every alpha level and every test level."""
    data = load_synthetic(prepare_synthetic(config, cache_root))
    level = data.level_index(train_alpha)
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
        train_images=input_images(data.images[level, train], scaling),
        train_masks=data.masks[train],
        val_images=input_images(data.images[level, val], scaling),
        val_masks=data.masks[val],
        conditions=tuple(conditions),
        manifest=split_manifest("synthetic", data.image_ids, data.split),
    )


def trial_data(config: StudyConfig, dataset: str, train_alpha: float | None, cache_root: str | Path) -> TrialData:
    """The arrays of one trial of ``dataset`` (``config`` as :meth:`StudyConfig.for_dataset` gives it)."""
    if dataset in SYNTHETIC_DATASETS:
        if train_alpha is None:
            raise ValueError("a synthetic trial needs a train_alpha")
        return synthetic_trial_data(config.for_dataset(dataset), train_alpha, cache_root)
    if dataset in MEDICAL_DATASETS:
        from trainables.medical import medical_trial_data  # medical imports this module

        return medical_trial_data(config, dataset, cache_root)
    raise ValueError(f"unknown data set '{dataset}'")


def main(argv: list[str] | None = None) -> int:
    """``prepare`` builds the cache and prints TS per level; ``preview`` writes a figure."""
    parser = argparse.ArgumentParser(prog="python -m trainables.data", description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("prepare", "preview"):
        command = sub.add_parser(name)
        command.add_argument("--config", default="conf/quick.yaml", help="study file (default: conf/quick.yaml)")
        command.add_argument("--cache", default=None, help="cache folder (default: the study's storage.cache)")
        if name == "preview":
            command.add_argument("--out", default="preview.png", help="figure file (PNG or PDF)")
            command.add_argument("--examples", type=int, default=3, help="example images per level")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_study(args.config)
    except StudyConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "preview" and config.datasets.synthetic is None:
        print(f"error: {args.config}: datasets.synthetic: this command needs the synthetic data set", file=sys.stderr)
        return 2
    cache = args.cache or config.storage.cache
    if args.command == "prepare":
        from trainables.medical import MedicalDataError, prepare_report  # medical imports this module

        for name in config.datasets.medical:
            try:
                print(prepare_report(config.for_dataset(name), name, cache))
            except MedicalDataError as error:
                print(f"error: {args.config}: datasets.{name}: {error}", file=sys.stderr)
                return 2
    if config.datasets.synthetic is None:
        return 0
    folder = prepare_synthetic(config, cache)
    data = load_synthetic(folder)
    print(f"synthetic data: {folder}")
    print("alpha   TS mean   TS std   (alpha = foreground share; 1 = easiest)")
    for alpha, ts in zip(data.alphas, data.ts, strict=True):
        stats = summarise(ts)
        print(f"{format_alpha(alpha):>5}   {stats['mean']:7.3f}   {stats['std']:6.3f}")
    if args.command == "preview":
        from trainables.preview import preview_figure

        figure = preview_figure(data, examples=args.examples, title=f"{config.study}: synthetic data by alpha")
        figure.savefig(args.out, dpi=120, bbox_inches="tight")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
