"""Synthetic data: deterministic, shared across levels, cached once across processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from trial_studies import small_study

from trainables.config import SyntheticConfig, parse_study
from trainables.datasets.cache import cached_directory
from trainables.datasets.synthetic.generate import blend, generate_base, random_mask
from trainables.datasets.synthetic.prepare import load_synthetic, prepare_synthetic, synthetic_trial_data

SMALL = {"train": 6, "val": 2, "test": 4}


def tiny_study(**synthetic) -> object:
    """The tests' small study at alpha 0.3 and 0.9 with :data:`SMALL` splits, ``synthetic`` merged into its data set."""
    return parse_study(
        small_study(
            "tiny",
            datasets={"synthetic": {"levels": [0.3, 0.9], "split": SMALL, **synthetic}},
            test_levels={"harder": {"kind": "speckle", "variance": 0.1}, "in_domain": {"kind": "none"}},
        )
    )


def test_generation_is_byte_identical_and_seed_dependent() -> None:
    config = SyntheticConfig(split=SMALL)
    first, second = generate_base(config, 32, 0), generate_base(config, 32, 0)
    other = generate_base(config, 32, 1)
    for name in ("masks", "backgrounds", "foregrounds"):
        assert getattr(first, name).tobytes() == getattr(second, name).tobytes()
    assert not np.array_equal(first.masks, other.masks)
    assert blend(first, 0.4).tobytes() == blend(second, 0.4).tobytes()


def test_masks_are_single_smooth_shapes_inside_the_image() -> None:
    from scipy.ndimage import label

    for seed in range(20):
        mask = random_mask(np.random.default_rng(seed), 64, SyntheticConfig().mask)
        assert 0.05 < mask.mean() < 0.6
        assert label(mask)[1] == 1
        assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()


def test_only_alpha_changes_between_levels(tmp_path: Path) -> None:
    data = load_synthetic(prepare_synthetic(tiny_study(), tmp_path))
    assert data.images.shape == (2, 12, 32, 32)
    outside = data.masks == 0
    assert np.array_equal(data.images[0][outside], data.images[1][outside])  # background identical
    assert not np.array_equal(data.images[0][~outside], data.images[1][~outside])
    assert sorted(np.concatenate(list(data.split.values()))) == list(range(12))
    assert [len(data.split[k]) for k in ("train", "val", "test")] == [6, 2, 4]


def test_trial_data_has_every_alpha_and_test_level(tmp_path: Path) -> None:
    data = synthetic_trial_data(tiny_study(), 0.3, tmp_path)
    assert [c.name for c in data.conditions] == ["alpha_0.30", "alpha_0.90", "harder", "in_domain"]
    assert data.train_images.shape == (6, 32, 32) and data.train_images.dtype == np.float32
    assert data.train_images.min() >= 0.0 and data.train_images.max() <= 1.0
    in_domain = data.conditions[3]
    assert [c.test_alpha for c in data.conditions[:2]] == [0.3, 0.9]
    assert all(np.isnan(c.test_alpha) for c in data.conditions[2:])  # not cells of the cross-alpha matrix
    assert np.array_equal(in_domain.images, data.conditions[0].images)  # alpha 0.30 is the trained level
    assert not np.array_equal(data.conditions[2].images, in_domain.images)
    assert data.manifest["test"] == list(in_domain.image_ids)
    again = synthetic_trial_data(tiny_study(), 0.9, tmp_path)
    assert again.manifest == data.manifest  # the split does not depend on alpha


def test_released_convention_reads_the_same_data(tmp_path: Path) -> None:
    paper = load_synthetic(prepare_synthetic(tiny_study(), tmp_path))
    released = load_synthetic(prepare_synthetic(tiny_study(alpha_convention="released", levels=[0.7, 0.1]), tmp_path))
    assert released.alphas == paper.alphas
    assert np.array_equal(released.images, paper.images)


def _count_and_build(folder: Path, counter: str) -> None:
    import time

    with open(counter, "a") as handle:
        handle.write("built\n")
    time.sleep(0.5)
    (folder / "content.txt").write_text("complete")


def _prepare_in_process(root: str, counter: str, queue) -> None:
    folder = cached_directory(root, "thing", {"k": 1}, lambda f: _count_and_build(f, counter))
    queue.put(str(folder))


def test_two_processes_build_the_cache_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    counter = tmp_path / "builds.txt"
    processes = [
        context.Process(target=_prepare_in_process, args=(str(tmp_path / "cache"), str(counter), queue))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    folders = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(folders) == 1
    assert counter.read_text() == "built\n"
    assert (Path(folders.pop()) / "content.txt").read_text() == "complete"
    assert not list((tmp_path / "cache").glob(".thing-*"))  # no staging folder left


def _prepare_synthetic_in_process(root: str, queue) -> None:
    folder = prepare_synthetic(tiny_study(), root)
    queue.put((str(folder), load_synthetic(folder).images.tobytes()))


def test_two_processes_preparing_synthetic_data_agree(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_prepare_synthetic_in_process, args=(str(tmp_path), queue)) for _ in range(2)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    assert results[0] == results[1]
    assert len(list(tmp_path.glob("synthetic-*[!k]"))) == 1


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    def explode(folder: Path) -> None:
        (folder / "partial.npy").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        cached_directory(tmp_path, "thing", {"k": 2}, explode)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    folder = cached_directory(tmp_path, "thing", {"k": 2}, lambda f: (f / "ok").write_text("1"))
    assert (folder / "ok").read_text() == "1"


def test_stale_staging_folder_of_a_killed_builder_is_removed(tmp_path: Path) -> None:
    from trainables.datasets.cache import cache_path

    final = cache_path(tmp_path, "thing", {"k": 3})
    stale = tmp_path / f".{final.name}.dead"
    stale.mkdir(parents=True)
    (stale / "half").write_text("x")
    cached_directory(tmp_path, "thing", {"k": 3}, lambda f: (f / "ok").write_text("1"))
    assert not stale.exists() and final.is_dir()


def test_preview_command_writes_a_figure(tmp_path: Path, capsys) -> None:
    import yaml

    from trainables.datasets.__main__ import main

    study = tmp_path / "tiny.yaml"
    study.write_text(yaml.safe_dump(tiny_study().model_dump(mode="json")))
    out = tmp_path / "preview.png"
    assert main(["preview", "--config", str(study), "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "0.30" in printed and "0.90" in printed


def test_data_command_refuses_a_bad_study_with_status_2(tmp_path: Path, capsys) -> None:
    from trainables.datasets.__main__ import main

    study = tmp_path / "bad.yaml"
    study.write_text("study: x\nvariants: [unet]\nseeds: [-1]\ndatasets: {synthetic: {}}\n")
    assert main(["prepare", "--config", str(study), "--cache", str(tmp_path / "cache")]) == 2
    assert "seeds" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


# --- released masks ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mask_areas() -> dict[str, np.ndarray]:
    """Foreground share of 600 masks at 64 px per construction, from fixed seeds (standard error ~0.003)."""
    areas = {}
    for construction in ("sectors", "released"):
        config = SyntheticConfig(mask={"construction": construction}).mask
        rngs = (np.random.default_rng(np.random.SeedSequence([11, i])) for i in range(600))
        areas[construction] = np.array([random_mask(rng, 64, config).mean() for rng in rngs])
    return areas


def test_released_masks_are_as_small_as_the_authors(mask_areas) -> None:
    # The authors' 100 released masks: mean foreground 0.151 (standard error ~0.007); ours 0.198.
    assert abs(mask_areas["released"].mean() - 0.151) < 0.02
    assert abs(mask_areas["sectors"].mean() - 0.198) < 0.02
    assert mask_areas["sectors"].mean() - mask_areas["released"].mean() > 0.02


def test_released_masks_are_filled_single_shapes_around_the_centre() -> None:
    from scipy.ndimage import binary_fill_holes, center_of_mass, label

    config = SyntheticConfig(mask={"construction": "released"}).mask
    centres = []
    for seed in range(20):
        mask = random_mask(np.random.default_rng(seed), 64, config)
        assert mask.dtype == np.uint8 and mask.shape == (64, 64)
        assert label(mask)[1] == 1
        assert np.array_equal(binary_fill_holes(mask), mask.astype(bool))
        centres.append(center_of_mass(mask))
    assert np.all(np.abs(np.array(centres) - 31.5) < 0.25 * 64)  # control points lie in [0.25, 0.75]^2


def test_mask_construction_is_part_of_the_cache_key() -> None:
    from trainables.datasets.synthetic.prepare import synthetic_cache_key

    assert synthetic_cache_key(tiny_study()) != synthetic_cache_key(tiny_study(mask={"construction": "released"}))


# --- input scaling -------------------------------------------------------------------------------


def test_input_images_by_hand() -> None:
    from trainables.datasets.arrays import input_images

    images = np.array([[[0, 51], [102, 255]], [[51, 51], [102, 102]], [[7, 7], [7, 7]]], np.uint8)
    divided = input_images(images)
    assert divided.dtype == np.float32
    np.testing.assert_allclose(divided[0], [[0, 0.2], [0.4, 1.0]], atol=1e-6)
    scaled = input_images(images, "min_max")
    np.testing.assert_allclose(scaled[0], [[0, 0.2], [0.4, 1.0]], atol=1e-6)
    np.testing.assert_allclose(scaled[1], [[0, 0], [1, 1]])
    np.testing.assert_array_equal(scaled[2], 0.0)  # a flat image becomes 0, as MONAI's ScaleIntensity does


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_input_images_equal_monai_scaling_on_random_images(dtype) -> None:
    from monai.transforms import ScaleIntensity, ScaleIntensityRange

    from trainables.datasets.arrays import input_images

    rng = np.random.default_rng(0)
    if dtype == np.uint8:
        images = rng.integers(0, 256, size=(20, 16, 16), dtype=np.uint8)
    else:
        images = rng.random((20, 16, 16), dtype=np.float32)
    images[3] = images[3, 0, 0]  # a flat image
    floats = images.astype(np.float32) / 255.0 if dtype == np.uint8 else images
    per_image = ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True, dtype=np.float32)
    np.testing.assert_allclose(input_images(images, "min_max"), np.asarray(per_image(floats)), rtol=0, atol=1e-7)
    if dtype == np.uint8:
        divide = ScaleIntensityRange(a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, dtype=np.float32)
        np.testing.assert_allclose(input_images(images), np.asarray(divide(images)), rtol=0, atol=1e-7)


def test_min_max_scaling_reaches_every_image_a_trial_sees(tmp_path: Path) -> None:
    from trainables.datasets.arrays import input_images

    plain = synthetic_trial_data(tiny_study(), 0.3, tmp_path)
    study = tiny_study().model_copy(
        update={"training": tiny_study().training.model_copy(update={"input_scaling": "min_max"})}
    )
    scaled = synthetic_trial_data(study, 0.3, tmp_path)
    for images in [scaled.train_images, scaled.val_images, *(c.images for c in scaled.conditions)]:
        np.testing.assert_allclose(images.min(axis=(1, 2)), 0.0, atol=1e-6)
        np.testing.assert_allclose(images.max(axis=(1, 2)), 1.0, atol=1e-6)
    assert plain.train_images.max(axis=(1, 2)).min() < 0.99  # divide_255 leaves the textures' own range
    harder = [c for c in scaled.conditions if c.name == "harder"][0]
    plain_harder = [c for c in plain.conditions if c.name == "harder"][0]
    # The noise is drawn on the image / 255 and scaled afterwards; TS is measured before the scaling.
    np.testing.assert_allclose(harder.images, input_images(plain_harder.images, "min_max"), atol=1e-6)
    np.testing.assert_array_equal(harder.ts, plain_harder.ts)


# --- the background direction as a second synthetic data set -----------------------------------


def test_background_direction_is_its_own_data_set(tmp_path: Path) -> None:
    from orchestrator.expand import expand
    from trainables.datasets.registry import trial_data

    bleed = {"levels": [0.3, 0.9], "split": SMALL, "foreground": "brick", "direction": "background_bleed"}
    base = tiny_study()
    study = parse_study(
        base.model_dump(mode="json")
        | {"datasets": {"synthetic": base.datasets.synthetic.model_dump(mode="json"), "synthetic_background": bleed}}
    )
    specs = expand(study)
    assert sorted({(s.dataset, s.train_alpha) for s in specs}) == [
        ("synthetic", 0.3),
        ("synthetic", 0.9),
        ("synthetic_background", 0.3),
        ("synthetic_background", 0.9),
    ]
    view = study.for_dataset("synthetic_background")
    assert view.datasets.synthetic.direction == "background_bleed" and view.config_hash() == study.config_hash()
    hard, easy = (trial_data(view, "synthetic_background", alpha, tmp_path) for alpha in (0.3, 0.9))
    foreground = hard.train_masks.astype(bool)
    np.testing.assert_array_equal(hard.train_images[foreground], easy.train_images[foreground])  # pure FG inside
    assert not np.array_equal(hard.train_images[~foreground], easy.train_images[~foreground])  # the bleed outside
    plain = trial_data(study, "synthetic", 0.3, tmp_path)
    np.testing.assert_array_equal(plain.train_masks, hard.train_masks)  # same masks and split, other data
    assert not np.array_equal(plain.train_images, hard.train_images)


def test_journal_study_ships_the_journal_metrics_and_both_directions(tmp_path: Path, monkeypatch) -> None:
    from medical_fixtures import write_all

    from trainables.config import load_study

    write_all(tmp_path)
    monkeypatch.setenv("SKIPSWEEP_DATA", str(tmp_path))
    study = load_study(Path(__file__).resolve().parent.parent / "conf" / "journal2025.yaml")
    assert (study.evaluation.hausdorff_percentile, study.evaluation.nsd_tolerance) == (100.0, 5.0)
    foreground, background = study.datasets.synthetic, study.datasets.synthetic_background
    assert (foreground.direction, background.direction) == ("foreground", "background_bleed")
    assert background.alphas == foreground.alphas and len(background.alphas) == 15
    assert (background.background, background.foreground) != (foreground.background, foreground.foreground)
