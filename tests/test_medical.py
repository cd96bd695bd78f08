"""Medical data sets from disk: layouts, patient-level splits, orientation, cache, errors, one trial end to end."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from medical_fixtures import FOLDERS, save_png, write_all, write_msd_task, write_nifti
from mlflow.tracking import MlflowClient

from trainables.config import (
    MEDICAL_DATASETS,
    BusiConfig,
    HeartConfig,
    SpleenConfig,
    StudyConfigError,
    load_study,
    parse_study,
)
from trainables.datasets.__main__ import main as data_main
from trainables.datasets.medical.layouts import MedicalDataError
from trainables.datasets.medical.prepare import load_medical, patient_split
from trainables.datasets.registry import MEDICAL_LAYOUTS, check_data, prepare_dataset, trial_data
from trainables.trial import TrialSpec, run_trial, trial_params

TINY = Path(__file__).resolve().parent.parent / "conf" / "example_medical_tiny.yaml"
LEVELS = ["hardest", "harder", "in_domain", "easier", "easiest"]
PATIENTS_PER_SPLIT = {"busi": (4, 1, 2), "spleen": (3, 1, 1), "heart": (3, 1, 1), "glas": (1, 1, 2)}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict:
    """The four tiny data sets, SKIPSWEEP_DATA pointing at them, and the shipped tiny study loaded."""
    root = tmp_path_factory.mktemp("data")
    expected = write_all(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKIPSWEEP_DATA", str(root))
        yield {"root": root, "expected": expected, "study": load_study(TINY), "cache": root.parent / "cache"}


def l_shape(size: int = 32) -> np.ndarray:
    """An L: a vertical bar on the left and an arm along the bottom pointing right (no symmetry)."""
    mask = np.zeros((size, size), dtype=bool)
    mask[4:28, 6:11] = True
    mask[23:28, 6:24] = True
    return mask


def study_with(datasets: dict, image_size: int = 32, **extra) -> dict:
    return {
        "study": "medical",
        "variants": ["unet"],
        "seeds": [0],
        "image_size": image_size,
        "model": {"channels": [4, 8, 16], "strides": [2, 2]},
        "datasets": datasets,
        "test_levels": {"harder": {"kind": "speckle", "variance": 0.1}, "in_domain": {"kind": "none"}},
        "texture_similarity": {"lbp_method": "uniform"},
        **extra,
    }


def test_the_registry_knows_the_layout_of_every_medical_data_set() -> None:
    assert set(MEDICAL_LAYOUTS) == set(MEDICAL_DATASETS)


@pytest.mark.parametrize("name", ["busi", "spleen", "heart", "glas"])
def test_fixtures_load_to_the_expected_slices_per_split(fixtures, name: str) -> None:
    data = load_medical(prepare_dataset(fixtures["study"], name, fixtures["cache"]))
    expected = fixtures["expected"][name]
    assert sorted(set(data.patients)) == sorted(expected)
    assert tuple(len(data.split[part]) for part in ("train", "val", "test")) == PATIENTS_PER_SPLIT[name]
    for part in ("train", "val", "test"):
        assert len(data.indices(part)) == sum(expected[patient] for patient in data.split[part])
    assert data.images.shape == (len(data.slice_ids), 32, 32) and data.images.dtype == np.uint8
    assert data.masks.reshape(len(data.masks), -1).any(axis=1).all()  # every slice has foreground
    assert len(set(data.slice_ids)) == len(data.slice_ids)


@pytest.mark.parametrize("name", ["busi", "spleen", "heart", "glas"])
def test_no_patient_appears_in_two_splits(fixtures, name: str) -> None:
    data = trial_data(fixtures["study"], name, None, fixtures["cache"])
    manifest = data.manifest
    train, val, test = (set(manifest["patients"][part]) for part in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(fixtures["expected"][name])
    prepared = load_medical(prepare_dataset(fixtures["study"], name, fixtures["cache"]))
    owner = dict(zip(prepared.slice_ids, prepared.patients, strict=True))
    for part in ("train", "val", "test"):
        assert {owner[slice_id] for slice_id in manifest[part]} <= set(manifest["patients"][part])
    assert len(manifest["train"]) == len(data.train_images) and len(manifest["test"]) == len(data.conditions[0].images)
    assert [c.name for c in data.conditions] == LEVELS and all(math.isnan(c.test_alpha) for c in data.conditions)
    assert len(manifest["hash"]) == 16


def test_glas_images_of_one_patient_stay_together(fixtures) -> None:
    data = load_medical(prepare_dataset(fixtures["study"], "glas", fixtures["cache"]))
    assert dict(zip(data.slice_ids, data.patients, strict=True))["testA_2"] == "patient_1"
    assert {p for s, p in zip(data.slice_ids, data.patients, strict=True) if s.startswith("testA")} == {"patient_1"}


@pytest.mark.parametrize(
    ("dataset", "patients", "counts"),
    [("busi", 647, (400, 100, 147)), ("spleen", 41, (27, 4, 10)), ("heart", 20, (13, 4, 3))],
)
def test_patient_split_follows_the_shares(dataset: str, patients: int, counts: tuple) -> None:
    shares = {"busi": BusiConfig, "spleen": SpleenConfig, "heart": HeartConfig}[dataset].model_fields["split"]
    shares = shares.default_factory()  # the paper's proportions
    ids = [f"p{i:03d}" for i in range(patients)]
    split = patient_split(ids, shares, dataset, data_seed=0)
    assert tuple(len(split[part]) for part in ("train", "val", "test")) == counts
    assert sorted(sum(split.values(), [])) == ids
    assert patient_split(ids[::-1], shares, dataset, 0) == split  # a function of the set, not its order
    assert patient_split(ids, shares, dataset, 1) != split
    with pytest.raises(MedicalDataError, match="too few"):
        patient_split(["a", "b"], shares, dataset, 0)


def test_busi_extra_masks_are_unioned_and_normal_is_excluded(fixtures) -> None:
    data = load_medical(prepare_dataset(fixtures["study"], "busi", fixtures["cache"]))
    assert not [s for s in data.slice_ids if s.startswith("normal")]
    root = fixtures["root"] / FOLDERS["busi"] / "benign"
    first, extra = read_picture(root / "benign (1)_mask.png") > 0, read_picture(root / "benign (1)_mask_1.png") > 0
    loaded = data.masks[data.slice_ids.index("benign (1)")] > 0
    assert extra.any() and not (first & extra).any()
    assert np.array_equal(loaded, first | extra)


def read_picture(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as picture:
        return np.asarray(picture)


@pytest.mark.parametrize("layout", ["busi", "glas"])
def test_png_and_bmp_load_as_written(tmp_path: Path, layout: str) -> None:
    shapes = {"a": l_shape(), "b": np.rot90(l_shape()), "c": l_shape()[:, ::-1]}
    if layout == "busi":
        for category in ("benign", "malignant"):
            (tmp_path / category).mkdir()
        for name, mask in shapes.items():
            save_png(tmp_path / "benign" / f"{name}.png", np.where(mask, 0.9, 0.1))
            save_png(tmp_path / "benign" / f"{name}_mask.png", mask)
    else:
        for name, mask in shapes.items():
            save_png(tmp_path / f"{name}.bmp", np.stack([np.where(mask, 0.9, 0.1)] * 3, axis=2))
            save_png(tmp_path / f"{name}_anno.bmp", mask)
    study = parse_study(study_with({layout: {"path": str(tmp_path)}}))
    data = load_medical(prepare_dataset(study, layout, tmp_path / "cache"))
    for name, mask in shapes.items():
        loaded = data.masks[data.slice_ids.index(name)]
        assert np.array_equal(loaded > 0, mask)  # the same array as written: no transpose, no flip
        assert np.array_equal(data.images[data.slice_ids.index(name)] > 127, loaded > 0)  # image and mask overlap


@pytest.mark.parametrize("slice_axis", ["axial", "sagittal"])
def test_nifti_slices_point_the_same_way_whatever_the_storage(tmp_path: Path, slice_axis: str) -> None:
    size, axis = 32, {"sagittal": 0, "axial": 2}[slice_axis]
    letter = l_shape(size)
    shape = [size, size, size]
    shape[axis] = 3
    label = np.zeros(shape, dtype=np.uint8)
    # The displayed L, placed in RAS voxels: displayed rows run from +v down, columns from +u leftwards,
    # u < v the in-plane RAS axes (axial: anterior up, patient's right on the left; sagittal: superior up,
    # anterior left). So voxel (u, v) of the slice shows at row size-1-v, column size-1-u.
    u, v = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    np.moveaxis(label, axis, 0)[1] = letter[size - 1 - v, size - 1 - u]
    image = np.where(label > 0, 200, -100).astype(np.int16)
    storages = ("ras", "lps", "permuted")
    write_msd_task(tmp_path, "case", "CT", {storage: (image, label, storage) for storage in storages})
    spleen = {"path": str(tmp_path), "slice_axis": slice_axis, "window": [-150, 250]}
    data = load_medical(prepare_dataset(parse_study(study_with({"spleen": spleen})), "spleen", tmp_path / "cache"))
    assert sorted(data.patients) == sorted(storages)  # one slice each
    for index in range(3):
        assert np.array_equal(data.masks[index] > 0, letter)
        assert np.array_equal(data.images[index] > 127, letter)


def test_preparing_twice_reuses_the_cache_and_a_changed_file_rebuilds(fixtures, monkeypatch, tmp_path) -> None:
    study, cache = fixtures["study"], tmp_path / "cache"
    first = prepare_dataset(study, "spleen", cache)
    built = (first / "meta.json").stat().st_mtime_ns

    def refuse(*args) -> None:
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr("trainables.datasets.medical.prepare._build", refuse)
    assert prepare_dataset(study, "spleen", cache) == first
    assert (first / "meta.json").stat().st_mtime_ns == built
    monkeypatch.undo()
    label = fixtures["root"] / FOLDERS["spleen"] / "labelsTr" / "spleen_2.nii.gz"
    stat = label.stat()
    try:
        os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert prepare_dataset(study, "spleen", cache) != first  # the folder's content is part of the key
    finally:
        os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_all_background_volume_is_warned_about_and_skipped(fixtures, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="trainables.datasets.medical.prepare"):
        data = load_medical(prepare_dataset(fixtures["study"], "spleen", tmp_path / "cache"))
    assert any("spleen_6.nii.gz" in r.getMessage() and "no foreground" in r.getMessage() for r in caplog.records)
    assert "spleen_6" not in data.patients


def _remove(relative: str):
    def change(root: Path) -> Path:
        path = root / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        return path

    return change


def _busi_without_categories(root: Path) -> Path:
    for category in ("benign", "malignant"):
        shutil.rmtree(root / FOLDERS["busi"] / category)
    return root / FOLDERS["busi"]


def _garbage(relative: str):
    def change(root: Path) -> Path:
        (root / relative).write_bytes(b"this is not an image \x00\x01\x02" * 10)
        return root / relative

    return change


def _small_png_mask(root: Path) -> Path:
    path = root / FOLDERS["busi"] / "malignant" / "malignant (1)_mask.png"
    save_png(path, np.ones((30, 32), dtype=bool))
    return path


def _short_nifti_label(root: Path) -> Path:
    path = root / FOLDERS["spleen"] / "labelsTr" / "spleen_2.nii.gz"
    write_nifti(path, np.ones((32, 32, 5), dtype=np.uint8))
    return path


BAD_DATA = [
    ("missing folder", "check", _remove(FOLDERS["busi"]), "busi"),
    ("busi without benign and malignant", "check", _busi_without_categories, "busi"),
    ("busi image without its mask", "check", _remove(f"{FOLDERS['busi']}/benign/benign (2)_mask.png"), "busi"),
    ("msd without dataset.json", "check", _remove(f"{FOLDERS['spleen']}/dataset.json"), "spleen"),
    ("msd with a broken dataset.json", "check", _garbage(f"{FOLDERS['heart']}/dataset.json"), "heart"),
    ("msd without labelsTr", "check", _remove(f"{FOLDERS['heart']}/labelsTr"), "heart"),
    ("msd label missing", "check", _remove(f"{FOLDERS['spleen']}/labelsTr/spleen_3.nii.gz"), "spleen"),
    ("glas image without annotation", "check", _remove(f"{FOLDERS['glas']}/train_2_anno.bmp"), "glas"),
    ("png mask shape differs", "prepare", _small_png_mask, "busi"),
    ("nifti label shape differs", "prepare", _short_nifti_label, "spleen"),
    ("corrupt png", "prepare", _garbage(f"{FOLDERS['busi']}/benign/benign (3).png"), "busi"),
    ("corrupt bmp annotation", "prepare", _garbage(f"{FOLDERS['glas']}/train_1_anno.bmp"), "glas"),
    ("corrupt nifti", "prepare", _garbage(f"{FOLDERS['spleen']}/imagesTr/spleen_4.nii.gz"), "spleen"),
]


@pytest.mark.parametrize(("stage", "change", "dataset"), [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_data_is_refused_naming_the_path(tmp_path: Path, monkeypatch, stage: str, change, dataset: str) -> None:
    write_all(tmp_path / "data")
    named = change(tmp_path / "data")
    monkeypatch.setenv("SKIPSWEEP_DATA", str(tmp_path / "data"))
    if stage == "check":
        with pytest.raises(StudyConfigError) as error:
            check_data(load_study(TINY), str(TINY))
        assert str(TINY) in str(error.value) and f"datasets.{dataset}.path" in str(error.value)
    else:
        with pytest.raises(MedicalDataError) as error:
            prepare_dataset(load_study(TINY), dataset, tmp_path / "cache")
        assert not list((tmp_path / "cache").glob(f"{dataset}-*[!k]"))  # nothing half-built left behind
    message = str(error.value)
    assert str(named) in message, message
    assert "\n" not in message


def test_an_unset_variable_and_relative_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SKIPSWEEP_DATA", raising=False)
    with pytest.raises(StudyConfigError, match=r"example_medical_tiny\.yaml: datasets\.busi\.path: .*SKIPSWEEP_DATA"):
        load_study(TINY)
    write_all(tmp_path / "data")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(study_with({"spleen": {"path": "data/Task09_Spleen"}})))
    assert load_study(study).datasets.spleen.path == str(tmp_path / "data" / "Task09_Spleen")


def test_data_set_overrides_apply_to_its_trials_only(fixtures) -> None:
    base = fixtures["study"].model_dump(mode="json")
    base["datasets"]["spleen"]["model"] = {"channels": [4, 8, 16, 32], "strides": [2, 2, 2]}
    base["datasets"]["spleen"]["training"] = {"learning_rate": 0.05}
    study = parse_study(base)
    spleen, heart = study.for_dataset("spleen"), study.for_dataset("heart")
    assert spleen.model.channels == (4, 8, 16, 32) and spleen.training.learning_rate == 0.05
    assert spleen.training.epochs == study.training.epochs  # the rest of 'training' is the study's
    assert heart is study and heart.training.learning_rate == 0.01
    assert trial_params(spleen)["learning_rate"] == 0.05
    assert spleen.config_hash() == study.config_hash()  # runs of one study stay comparable
    with pytest.raises(ValueError, match="not a data set"):
        study.for_dataset("synthetic")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"model": {"chanels": [4, 8]}}, "datasets.spleen.model"),
        ({"model": {"channels": [4, 8, 16, 32]}}, "datasets.spleen.model"),  # strides not given
        ({"model": {"channels": [4, 8, 16, 32, 64, 128], "strides": [2] * 5}}, "datasets.spleen.model"),  # 48 / 32
        ({"training": {"learning_rate": -1}}, "datasets.spleen.training.learning_rate"),
        ({"split": {"train": 0.5, "val": 0.2, "test": 0.2}}, "datasets.spleen.split"),
        ({"window": [250, -150]}, "datasets.spleen.window"),
    ],
)
def test_bad_data_set_settings_are_refused_naming_the_key(tmp_path: Path, override: dict, key: str) -> None:
    write_all(tmp_path / "data")
    spleen = {"path": str(tmp_path / "data" / "Task09_Spleen"), **override}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(study_with({"spleen": spleen}, image_size=48)))
    with pytest.raises(StudyConfigError) as error:
        load_study(path)
    assert str(path) in str(error.value) and key in str(error.value)


def test_medical_data_set_needs_test_levels(fixtures) -> None:
    data = fixtures["study"].model_dump(mode="json") | {"test_levels": {}}
    with pytest.raises(StudyConfigError, match="test_levels"):
        parse_study(data)


def test_prepare_command_prints_splits_and_ts_per_level(fixtures, capsys) -> None:
    assert data_main(["prepare", "--config", str(TINY), "--cache", str(fixtures["cache"])]) == 0
    printed = capsys.readouterr().out
    for name in ("busi", "spleen", "heart", "glas"):
        assert f"{name}: " in printed
    assert printed.count("in_domain") == 4 and printed.count("hardest") == 4


def test_a_medical_trial_runs_end_to_end_and_logs_the_five_levels(fixtures, tmp_path: Path) -> None:
    study = fixtures["study"]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = TrialSpec(study.study, "spleen", "unet", None, 0)
    result = run_trial(spec, study, work_dir=tmp_path / "w", tracking_uri=uri, cache_root=fixtures["cache"])
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "unet s0 spleen"
    assert run.data.tags["train_alpha"] == "" and run.data.params["learning_rate"] == "0.01"
    metrics = run.data.metrics
    for level in LEVELS:
        assert f"test_dice.{level}" in metrics and f"test_ts.{level}" in metrics
    assert metrics["test_ts.harder"] < metrics["test_ts.in_domain"] < metrics["test_ts.easier"]
    manifest = json.loads(
        Path(client.download_artifacts(result.run_id, "split_manifest.json", str(tmp_path))).read_text()
    )
    assert manifest["hash"] == run.data.tags["split_hash"]
    assert manifest["dataset"] == "spleen" and set(manifest["patients"]) == {"train", "val", "test"}
    same = trial_data(study, "spleen", None, fixtures["cache"])
    assert same.manifest == manifest
