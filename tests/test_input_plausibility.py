"""Inputs that validate but cannot be meant, and a dry run that reads no data.

- a texture file with no texture (one grey level) is refused before Ray starts, in a real and a dry run;
- ``training.epochs`` above 100000 is refused; a dry-run estimate beyond 1e5 GPU-hours or a year per
  trial ends in one ``warning:`` line naming the keys to check;
- a dry run of a study whose medical folders are absent (``SKIPSWEEP_DATA`` unset, or no folder there)
  prints the trial table and one ``warning:`` per path it could not check, while a real run refuses them.

Every case runs the real entry point and checks that nothing was created in its folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from orchestrator.run import main

ROOT = Path(__file__).resolve().parent.parent
NO_TEXTURE = (
    "read as gray, as the data set uses it, it shows no pattern to learn or to measure; give an image whose grey "
    "levels vary"
)
NOT_CHECKED = "not checked (a real run refuses it)"
UNSET_HINT = "set it to the folder that holds the data sets, e.g. export SKIPSWEEP_DATA=/data"
MICCAI_FOLDERS = {"busi": "Dataset_BUSI_with_GT", "spleen": "Task09_Spleen", "heart": "Task02_Heart"}


def tiny_study(**changes) -> dict:
    """A valid one-trial synthetic study on 32x32 images; ``changes`` replace top-level keys."""
    return {
        "study": "t",
        "variants": ["unet"],
        "seeds": [0],
        "image_size": 32,
        "model": {"channels": [4, 8, 16], "strides": [2, 2]},
        "datasets": {"synthetic": {"levels": [0.5]}},
        **changes,
    }


def write_study(folder: Path, data: dict) -> Path:
    path = folder / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    """``main(argv)`` in this process: its exit status, its stdout and its stderr lines."""
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err.splitlines()


def assert_nothing_created(folder: Path, inputs: list[str]) -> None:
    assert sorted(path.name for path in folder.iterdir()) == sorted(inputs)
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


def flat(value: int, mode: str) -> np.ndarray:
    """An 8x8 image of one value in every channel of ``mode``."""
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    image = np.full((8, 8, *channels), value, dtype=np.uint8)
    if mode == "RGBA":
        image[..., 3] = 255  # opaque: only the missing texture is wrong
    return image


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize(
    ("key", "image", "mode", "shown"),
    [
        ("foreground", flat(0, "L"), "L", "0.0"),
        ("background", flat(128, "RGB"), "RGB", "0.502"),
        ("foreground", flat(255, "RGBA"), "RGBA", "1.0"),
    ],
    ids=["black", "grey-rgb", "white-rgba"],
)
def test_a_texture_without_texture_is_refused_before_ray(
    tmp_path: Path, capsys, monkeypatch, dry_run: bool, key: str, image: np.ndarray, mode: str, shown: str
) -> None:
    monkeypatch.chdir(tmp_path)  # the study's default store, results and cache would land here
    texture = tmp_path / "flat.png"
    Image.fromarray(image, mode).save(texture)
    study = write_study(tmp_path, tiny_study(datasets={"synthetic": {"levels": [0.5], key: "flat.png"}}))

    status, out, err = run(["--config", str(study), *(["--dry-run"] if dry_run else [])], capsys)

    assert status == 2 and out == ""
    assert err == [
        f"error: {study}: datasets.synthetic.{key}: {texture} has no texture (every pixel is {shown}): {NO_TEXTURE}"
    ]
    assert_nothing_created(tmp_path, ["flat.png", "t.yaml"])


def test_a_texture_of_two_grey_levels_is_accepted(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    image = flat(0, "L")
    image[0, 0] = 1  # one grey level apart: a texture, if a poor one
    Image.fromarray(image).save(tmp_path / "dots.png")
    study = write_study(tmp_path, tiny_study(datasets={"synthetic": {"levels": [0.5], "foreground": "dots.png"}}))

    status, out, err = run(["--config", str(study), "--dry-run"], capsys)

    assert (status, err) == (0, []) and out.startswith("study t: 1 trial(s)")
    assert_nothing_created(tmp_path, ["dots.png", "t.yaml"])


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"training": {"epochs": 1_000_000_000_000}}, "training.epochs"),
        (
            {
                "datasets": {"busi": {"path": "BUSI", "training": {"epochs": 1_000_000_000_000}}},
                "test_levels": {"in_domain": {"kind": "none"}},
            },
            "datasets.busi.training.epochs",
        ),
    ],
    ids=["study", "data-set-override"],
)
def test_an_implausible_number_of_epochs_is_refused(
    tmp_path: Path, capsys, monkeypatch, dry_run: bool, changes: dict, key: str
) -> None:
    monkeypatch.chdir(tmp_path)
    study = write_study(tmp_path, tiny_study(**changes))

    status, out, err = run(["--config", str(study), *(["--dry-run"] if dry_run else [])], capsys)

    assert status == 2 and out == ""
    assert err == [f"error: {study}: {key}: 1000000000000 epochs is implausible: at most 100000 (the paper trains 100)"]
    assert_nothing_created(tmp_path, ["t.yaml"])


def test_an_implausible_estimate_is_named_in_one_warning(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = write_study(tmp_path, tiny_study(training={"epochs": 100_000}, seeds=[0, 1]))  # the most allowed

    status, out, err = run(["--config", str(study), "--dry-run", "--epoch-seconds", "unet=600"], capsys)

    # 2 trials x 100000 epochs x 600 s = 33333 trial-hours x 0.25 GPU = 8333 GPU-hours; 1.9 years a trial
    assert status == 0 and "estimated: 33333.33 trial-hours, 8333.33 GPU-hours" in out
    assert err == [
        "warning: implausible estimate: 1.9 years for trial unet a0.50 s0 synthetic alone; "
        "check training.epochs (100000) and --epoch-seconds (unet=600 seconds per epoch)"
    ]
    assert_nothing_created(tmp_path, ["t.yaml"])


def test_a_plausible_estimate_has_no_warning(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(
        ["--config", str(ROOT / "conf" / "quick.yaml"), "--dry-run", "--epoch-seconds", "unet=20"], capsys
    )
    assert (status, err) == (0, []) and "estimated:" in out
    assert_nothing_created(tmp_path, [])


def test_a_dry_run_without_skipsweep_data_prints_the_table_and_warns(tmp_path: Path) -> None:
    config = ROOT / "conf" / "miccai2023.yaml"
    environment = {name: value for name, value in os.environ.items() if name != "SKIPSWEEP_DATA"}
    command = [sys.executable, "-m", "orchestrator.run", "--config", str(config), "--dry-run"]
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])

    result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("study miccai2023: 108 trial(s)\n") and "unet s0 busi" in result.stdout
    assert result.stderr.splitlines() == [
        f"warning: {config}: datasets.{name}.path: {NOT_CHECKED}: environment variable SKIPSWEEP_DATA is not set "
        f"(in '${{SKIPSWEEP_DATA}}/{folder}'); {UNSET_HINT}"
        for name, folder in MICCAI_FOLDERS.items()
    ]
    assert_nothing_created(tmp_path, [])


@pytest.mark.parametrize("study_file", ["miccai2023.yaml", "journal2025.yaml"])
def test_a_real_run_without_skipsweep_data_is_refused(tmp_path: Path, capsys, monkeypatch, study_file: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SKIPSWEEP_DATA", raising=False)
    config = ROOT / "conf" / study_file

    status, out, err = run(["--config", str(config)], capsys)

    assert status == 2 and out == ""
    assert err == [
        f"error: {config}: datasets.busi.path: environment variable SKIPSWEEP_DATA is not set "
        f"(in '${{SKIPSWEEP_DATA}}/Dataset_BUSI_with_GT'); {UNSET_HINT}"
    ]
    assert_nothing_created(tmp_path, [])


def test_absent_folders_warn_in_a_dry_run_and_are_refused_in_a_real_run(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "nowhere"
    monkeypatch.setenv("SKIPSWEEP_DATA", str(data))
    config = ROOT / "conf" / "miccai2023.yaml"

    status, out, err = run(["--config", str(config), "--dry-run"], capsys)

    assert status == 0 and out.startswith("study miccai2023: 108 trial(s)")
    assert err == [
        f"warning: {config}: datasets.{name}.path: {NOT_CHECKED}: {data / folder}: folder not found "
        f"(it should hold the {name} data set as published)"
        for name, folder in MICCAI_FOLDERS.items()
    ]
    status, out, err = run(["--config", str(config)], capsys)
    assert status == 2 and out == ""
    assert err == [
        f"error: {config}: datasets.busi.path: {data / 'Dataset_BUSI_with_GT'}: folder not found "
        "(it should hold the busi data set as published)"
    ]
    assert_nothing_created(tmp_path, [])


def test_a_folder_that_is_there_is_still_checked_in_a_dry_run(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Dataset_BUSI_with_GT").mkdir()  # there, but empty: not the published layout
    monkeypatch.setenv("SKIPSWEEP_DATA", str(tmp_path))
    config = ROOT / "conf" / "miccai2023.yaml"

    status, out, err = run(["--config", str(config), "--dry-run"], capsys)

    assert status == 2 and out == ""
    assert len(err) == 1 and err[0].startswith(
        f"error: {config}: datasets.busi.path: {tmp_path / 'Dataset_BUSI_with_GT'}"
    )
    assert_nothing_created(tmp_path, ["Dataset_BUSI_with_GT"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trainng": {"epochs": 3}}, "trainng: unknown key 'trainng'"),
        ({"training": {"epochs": 0}}, "training.epochs: Input should be greater than or equal to 1"),
    ],
    ids=["wrong-key", "bad-value"],
)
def test_a_bad_study_without_skipsweep_data_still_fails_a_dry_run(
    tmp_path: Path, capsys, monkeypatch, change: dict, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SKIPSWEEP_DATA", raising=False)
    data = yaml.safe_load((ROOT / "conf" / "miccai2023.yaml").read_text())
    study = write_study(tmp_path, {**data, **change})

    status, out, err = run(["--config", str(study), "--dry-run"], capsys)

    assert status == 2 and out == ""
    assert err == [f"error: {study}: {message}"]
    assert_nothing_created(tmp_path, ["t.yaml"])


def test_a_texture_under_an_unset_variable_warns_in_a_dry_run(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SKIPSWEEP_TEXTURES", raising=False)
    texture = "${SKIPSWEEP_TEXTURES}/bark.png"
    study = write_study(tmp_path, tiny_study(datasets={"synthetic": {"levels": [0.5], "background": texture}}))

    status, out, err = run(["--config", str(study), "--dry-run"], capsys)

    assert status == 0 and out.startswith("study t: 1 trial(s)")
    assert err == [
        f"warning: {study}: datasets.synthetic.background: {NOT_CHECKED}: environment variable SKIPSWEEP_TEXTURES "
        f"is not set (in '{texture}'); set it to the folder that holds the data sets, "
        "e.g. export SKIPSWEEP_TEXTURES=/data"
    ]
    assert_nothing_created(tmp_path, ["t.yaml"])
