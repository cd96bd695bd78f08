"""GlaS in the Train_Folder / Test_Folder layout (as UCTransNet and UDTransNet redistribute it).

The folders give the official train / test split and validation is drawn from training, seeded;
``labelcol > 0`` is foreground; the registry picks the layout by what it finds unless the study
names it; bad input is refused by the real command in one line naming the file, before any work.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from medical_fixtures import save_png, write_glas, write_glas_folders
from PIL import Image
from trial_studies import small_study

from orchestrator.run import main
from trainables.config import GlasConfig, StudyConfigError, parse_study
from trainables.datasets.medical import prepare
from trainables.datasets.registry import check_data, medical_cases, prepare_dataset

TRAIN = [f"Train_Folder/{n}" for n in range(1, 11)]  # write_glas_folders' defaults: 10 training, 4 test images
TEST = [f"Test_Folder/{n}" for n in range(1, 5)]


def glas_study(path: Path, data_seed: int = 0, layout: str | None = None) -> dict:
    """The small study of the tests on one GlaS folder (``layout`` left out: auto)."""
    glas = {"path": str(path)} | ({"layout": layout} if layout else {})
    study = small_study("glas_folders", data_seed=data_seed)
    return {**study, "datasets": {"glas": glas}, "test_levels": {"in_domain": {"kind": "none"}}}


def prepared(path: Path, cache: Path, data_seed: int = 0, layout: str | None = None) -> prepare.MedicalData:
    study = parse_study(glas_study(path, data_seed, layout))
    return prepare.load_medical(prepare_dataset(study, "glas", cache))


def test_the_folders_give_train_and_test_and_validation_is_drawn_from_training(tmp_path: Path) -> None:
    assert sorted(write_glas_folders(tmp_path / "GlaS")) == sorted(TRAIN + TEST)
    data = prepared(tmp_path / "GlaS", tmp_path / "cache")
    assert sorted(data.slice_ids) == sorted(data.patients) == sorted(TRAIN + TEST)  # each image its own patient
    assert [len(data.indices(part)) for part in prepare.SPLITS] == [8, 2, 4]  # val: 0.103 / 0.515 of 10
    assert data.split["test"] == sorted(TEST)
    assert sorted(data.split["train"] + data.split["val"]) == sorted(TRAIN)
    assert prepared(tmp_path / "GlaS", tmp_path / "again").split == data.split  # same seed, same split
    other = prepared(tmp_path / "GlaS", tmp_path / "cache", data_seed=1)
    assert other.split["val"] != data.split["val"] and other.split["test"] == data.split["test"]


def test_the_default_shares_draw_17_of_the_85_official_training_images() -> None:
    given = {f"Train_Folder/{n}": "train" for n in range(1, 86)} | {f"Test_Folder/{n}": "test" for n in range(1, 81)}
    shares = GlasConfig.model_fields["split"].default_factory()
    split = prepare.given_split(list(given), given, shares, "glas", 0)
    assert [len(split[part]) for part in prepare.SPLITS] == [68, 17, 80]
    assert split["test"] == sorted(p for p, part in given.items() if part == "test")
    assert sorted(split["train"] + split["val"]) == sorted(p for p, part in given.items() if part == "train")
    assert prepare.given_split(list(given)[::-1], given, shares, "glas", 0) == split  # not a function of the order
    assert prepare.given_split(list(given), given, shares, "glas", 1)["val"] != split["val"]


def test_foreground_is_labelcol_above_zero(tmp_path: Path) -> None:
    letter = np.zeros((32, 32), dtype=np.uint8)  # an L: no symmetry, so a flip or a transpose would show
    letter[4:28, 6:11] = 1
    letter[23:28, 11:24] = 2
    masks = {"1": letter, "2": np.rot90(letter) * 7, "3": letter[:, ::-1] * 100, "4": letter.T}  # ids 1 ... 200
    for name, labels in masks.items():
        folder = tmp_path / "GlaS" / ("Test_Folder" if name == "4" else "Train_Folder")
        for sub in ("img", "labelcol"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        save_png(folder / "img" / f"{name}.png", np.stack([np.where(labels > 0, 0.9, 0.1)] * 3, axis=2))
        Image.fromarray(np.ascontiguousarray(labels)).save(folder / "labelcol" / f"{name}.png")
    data = prepared(tmp_path / "GlaS", tmp_path / "cache")
    for name, labels in masks.items():
        index = data.slice_ids.index(f"{'Test' if name == '4' else 'Train'}_Folder/{name}")
        assert np.array_equal(data.masks[index] > 0, labels > 0)  # 32 px: read as written, not resized
        assert np.array_equal(data.images[index] > 127, labels > 0)


def test_the_registry_picks_the_layout_by_what_it_finds(tmp_path: Path) -> None:
    official, folders = tmp_path / "official", tmp_path / "folders"
    official_patients = write_glas(official)
    write_glas_folders(folders)
    found = medical_cases("glas", official)
    assert {case.patient for case in found} == set(official_patients)  # Grade.csv's patients
    assert {case.given_split for case in found} == {None}
    found = medical_cases("glas", folders)
    assert sorted(case.case_id for case in found) == sorted(TRAIN + TEST)
    assert all(case.case_id.startswith({"train": "Train", "test": "Test"}[case.given_split]) for case in found)
    assert medical_cases("glas", folders, "train_test_folders") == found
    named = prepared(folders, tmp_path / "cache", layout="train_test_folders")
    assert named.split == prepared(folders, tmp_path / "cache").split


@pytest.mark.parametrize(
    ("layout", "folder", "named"),
    [("official", "folders", "folders"), ("train_test_folders", "official", "official/Train_Folder/img")],
)
def test_a_layout_the_folder_does_not_hold_is_refused(tmp_path: Path, layout: str, folder: str, named: str) -> None:
    write_glas(tmp_path / "official")
    write_glas_folders(tmp_path / "folders")
    with pytest.raises(StudyConfigError) as error:
        check_data(parse_study(glas_study(tmp_path / folder, layout=layout)), "study.yaml")
    message = str(error.value)
    assert message.startswith("study.yaml: datasets.glas.path: ") and str(tmp_path / named) in message, message
    assert "\n" not in message


def _remove_a_mask(root: Path) -> Path:
    path = root / "Test_Folder" / "labelcol" / "3.png"
    path.unlink()
    return path


def _shrink_a_mask(root: Path) -> Path:
    path = root / "Train_Folder" / "labelcol" / "2.png"
    Image.fromarray(np.ones((30, 48), dtype=np.uint8)).save(path)
    return path


def _empty_a_folder(root: Path) -> Path:
    folder = root / "Test_Folder" / "img"
    for picture in folder.iterdir():
        picture.unlink()
    return folder


def _remove_an_image(root: Path) -> Path:
    (root / "Train_Folder" / "img" / "7.png").unlink()
    return root / "Train_Folder" / "labelcol" / "7.png"  # the mask left without its image


def _blank_a_mask(root: Path) -> Path:
    path = root / "Train_Folder" / "labelcol" / "5.png"
    Image.fromarray(np.zeros((40, 48), dtype=np.uint8)).save(path)
    return path


# name, the damage (returns the path the error must name), whether listing the files finds it (a dry run does)
BAD_INPUT: list[tuple[str, Callable[[Path], Path], bool]] = [
    ("missing mask", _remove_a_mask, True),
    ("size mismatch", _shrink_a_mask, False),
    ("empty folder", _empty_a_folder, True),
    ("no foreground anywhere", _blank_a_mask, False),
    ("mask without its image", _remove_an_image, True),
]


@pytest.mark.parametrize(("damage", "listed"), [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_refused_in_one_line_naming_the_file_before_any_work(
    tmp_path: Path, capsys, damage: Callable[[Path], Path], listed: bool
) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    out.mkdir()
    write_glas_folders(inputs / "GlaS")
    named = damage(inputs / "GlaS")
    study = inputs / "study.yaml"
    study.write_text(yaml.safe_dump(glas_study(inputs / "GlaS")))
    before = sorted(inputs.rglob("*"))
    places = ["--tracking-uri", f"sqlite:///{out}/mlflow.db", "--storage", str(out / "results")]

    status = main(["--config", str(study), *places, "--cache", str(out / "cache")])

    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {study}: datasets.glas"), err
    assert str(named) in err, err
    assert list(out.iterdir()) == [], "something was written before the input was refused"
    assert sorted(inputs.rglob("*")) == before
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()
    assert main(["--config", str(study), "--dry-run"]) == (2 if listed else 0)  # a dry run lists files, reads none
    assert (str(named) in capsys.readouterr().err) == listed


def test_the_layout_key_leaves_the_config_hash_as_it_was(tmp_path: Path) -> None:
    """How a folder is read is operational (what was read is in the split hash): old and new runs stay comparable."""
    without = parse_study(glas_study(tmp_path))
    hashes = {parse_study(glas_study(tmp_path, layout=name)).config_hash() for name in ("official", "auto")}
    assert hashes == {without.config_hash()}
    payload = without.model_dump(mode="json")["datasets"]["glas"]
    assert payload["layout"] == "auto"  # the key exists: the hash drops it, not the schema
