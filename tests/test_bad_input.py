"""Bad input is refused before any work: one line naming the file, key or path; exit 2; nothing left behind.

Each case runs the real command (``orchestrator.run.main``) in this process on a
study file or a folder that is wrong in one way, and checks that no MLflow store,
cache, results folder or Ray session was made. The autouse fixture of conftest
checks that no Ray or MLflow process was started.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import free_port
from medical_fixtures import write_busi
from PIL import Image

from orchestrator.run import main

BASE = {
    "study": "bad",
    "variants": ["noskip_unet", "unet"],
    "seeds": [0],
    "image_size": 32,
    "model": {"channels": [4, 8, 16], "strides": [2, 2]},
    "datasets": {"synthetic": {"levels": [0.5, 1.0], "split": {"train": 8, "val": 4, "test": 4}}},
    "texture_similarity": {"lbp_method": "uniform"},
    "training": {"epochs": 2, "batch_size": 4},
    "resources": {"cpu": 1, "gpu": 0},
}


def study_with(path: list[str], value) -> Callable[[Path], dict]:
    """A study whose key at ``path`` is ``value`` (the key is removed when value is ``DROP``)."""

    def make(_: Path) -> dict:
        study = copy.deepcopy(BASE)
        node = study
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if value is DROP:
            node.pop(path[-1])
        else:
            node[path[-1]] = value
        return study

    return make


DROP = object()


def texture_file(content: bytes | None, key: str = "foreground") -> Callable[[Path], dict]:
    """A study whose texture is a file with ``content`` (None: a folder instead of a file)."""

    def make(folder: Path) -> dict:
        target = folder / "texture.png"
        if content is None:
            target.mkdir()
        else:
            target.write_bytes(content)
        study = copy.deepcopy(BASE)
        study["datasets"]["synthetic"][key] = str(target)
        return study

    return make


def medical(busi: dict) -> Callable[[Path], dict]:
    """A study of one BUSI data set configured as ``busi``."""

    def make(_: Path) -> dict:
        return {**copy.deepcopy(BASE), "datasets": {"busi": busi}, "test_levels": {"in_domain": {"kind": "none"}}}

    return make


def busi_study(break_it: Callable[[Path], None]) -> Callable[[Path], dict]:
    """A study on a BUSI-style folder that ``break_it`` damages."""

    def make(folder: Path) -> dict:
        data = folder / "busi"
        write_busi(data)
        break_it(data)
        study = copy.deepcopy(BASE)
        study["datasets"] = {"busi": {"path": str(data)}}
        study["test_levels"] = {"in_domain": {"kind": "none"}}
        return study

    return make


def _remove_benign(folder: Path) -> None:
    for item in (folder / "benign").iterdir():
        item.unlink()
    (folder / "benign").rmdir()


def _remove_first_mask(folder: Path) -> None:
    next(iter(sorted((folder / "benign").glob("*_mask.png")))).unlink()


def _corrupt_first_image(folder: Path) -> None:
    (folder / "benign" / "benign (1).png").write_bytes(b"\x89PNG but not really")


def _shrink_first_mask(folder: Path) -> None:
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "benign" / "benign (1)_mask.png")


# (case id, study maker or raw YAML text, extra command-line arguments, fragments the one-line error must name)
CASES = [
    ("yaml-syntax", "study: [unclosed\n", [], ["study.yaml", "line", "YAML syntax error"]),
    ("duplicate-key", "study: a\nstudy: b\n", [], ["study.yaml", "duplicate key 'study'"]),
    ("not-a-mapping", "- just\n- a list\n", [], ["study.yaml", "mapping"]),
    ("empty-file", "", [], ["study.yaml", "mapping"]),
    ("unknown-top-key", study_with(["epochs"], 3), [], ["study.yaml", "unknown key 'epochs'"]),
    ("unknown-nested-key", study_with(["training", "epoch"], 3), [], ["training.epoch", "unknown key"]),
    ("missing-study-name", study_with(["study"], DROP), [], ["study.yaml", "study"]),
    ("bad-study-name", study_with(["study"], "my study"), [], ["study.yaml", "study"]),
    ("variants-empty", study_with(["variants"], []), [], ["variants"]),
    ("variant-unknown", study_with(["variants"], ["resnet"]), [], ["variants", "resnet"]),
    ("variant-twice", study_with(["variants"], ["unet", "unet"]), [], ["variants", "twice"]),
    ("seeds-empty", study_with(["seeds"], []), [], ["seeds"]),
    ("seed-negative", study_with(["seeds"], [-1]), [], ["seeds", ">= 0"]),
    ("seed-wrong-type", study_with(["seeds"], ["zero"]), [], ["seeds"]),
    ("epochs-zero", study_with(["training", "epochs"], 0), [], ["training.epochs"]),
    ("lr-negative", study_with(["training", "learning_rate"], -0.1), [], ["training.learning_rate"]),
    ("batch-size-text", study_with(["training", "batch_size"], "eight"), [], ["training.batch_size"]),
    ("test-checkpoint", study_with(["training", "test_checkpoint"], "middle"), [], ["training.test_checkpoint"]),
    ("image-size-depth", study_with(["image_size"], 34), [], ["image_size", "divisible"]),
    ("strides-channels", study_with(["model", "strides"], [2]), [], ["model", "strides"]),
    ("vnet-size", lambda _: {**copy.deepcopy(BASE), "variants": ["vnet"], "image_size": 48}, [], ["image_size", "32"]),
    ("no-datasets", study_with(["datasets"], {}), [], ["datasets", "at least one"]),
    ("levels-empty", study_with(["datasets", "synthetic", "levels"], []), [], ["datasets.synthetic.levels"]),
    ("level-above-one", study_with(["datasets", "synthetic", "levels"], [0.5, 1.5]), [], ["levels", "1.5"]),
    ("level-twice", study_with(["datasets", "synthetic", "levels"], [0.5, 0.5]), [], ["levels", "duplicate"]),
    ("mask-extent", study_with(["datasets", "synthetic", "mask", "min_extent"], 0.9), [], ["mask", "min_extent"]),
    ("test-level-name", study_with(["test_levels"], {"hard": {"kind": "none"}}), [], ["test_levels", "hard"]),
    ("speckle-no-variance", study_with(["test_levels"], {"harder": {"kind": "speckle"}}), [], ["variance"]),
    (
        "blur-with-variance",
        study_with(["test_levels"], {"easier": {"kind": "background_blur", "variance": 3}}),
        [],
        ["easier"],
    ),
    ("gpu-above-one", study_with(["resources", "gpu"], 1.5), [], ["resources.gpu"]),
    (
        "texture-missing",
        study_with(["datasets", "synthetic", "background"], "/nonexistent/bark.png"),
        [],
        ["datasets.synthetic.background", "/nonexistent/bark.png"],
    ),
    ("texture-not-image", texture_file(b"this is not a picture"), [], ["datasets.synthetic.foreground", "texture.png"]),
    ("texture-is-folder", texture_file(None, "background"), [], ["datasets.synthetic.background", "texture.png"]),
    (
        "medical-missing-folder",
        medical({"path": "/nonexistent/BUSI"}),
        [],
        ["datasets.busi.path", "/nonexistent/BUSI"],
    ),
    (
        "medical-unset-variable",
        medical({"path": "${SKIPSWEEP_TEST_UNSET}/BUSI"}),
        [],
        ["SKIPSWEEP_TEST_UNSET"],
    ),
    ("busi-wrong-layout", busi_study(_remove_benign), [], ["datasets.busi", "benign"]),
    ("busi-mask-missing", busi_study(_remove_first_mask), [], ["datasets.busi", "_mask.png"]),
    ("busi-corrupt-image", busi_study(_corrupt_first_image), [], ["datasets.busi", "benign (1).png"]),
    ("busi-mask-shape", busi_study(_shrink_first_mask), [], ["datasets.busi", "benign (1)_mask.png"]),
    (
        "tracking-not-answering",
        study_with(["study"], "bad"),
        ["--tracking-uri", "http://127.0.0.1:{port}"],
        ["http://127.0.0.1:", "does not answer"],
    ),
    (
        "tracking-file-store",
        study_with(["study"], "bad"),
        ["--tracking-uri", "file:///{tmp}/mlruns"],
        ["file:///", "file stores"],
    ),
    (
        "tracking-under-a-file",
        study_with(["study"], "bad"),
        ["--tracking-uri", "sqlite:///{tmp}/a_file/mlflow.db"],
        ["a_file", "is a file"],
    ),
    (
        "storage-under-a-file",
        study_with(["study"], "bad"),
        ["--storage", "{tmp}/a_file/results"],
        ["storage path", "a_file"],
    ),
    ("cache-under-a-file", study_with(["study"], "bad"), ["--cache", "{tmp}/a_file/cache"], ["cache folder", "a_file"]),
    ("checkpoint-every-zero", study_with(["study"], "bad"), ["--checkpoint-every", "0"], ["--checkpoint-every"]),
    ("epoch-seconds-bad", study_with(["study"], "bad"), ["--epoch-seconds", "unet:3"], ["--epoch-seconds", "unet:3"]),
]


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("make", "extra", "fragments"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_work(tmp_path: Path, capsys, make, extra, fragments: list[str]) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    (inputs / "a_file").write_text("a file where a folder should be")
    study = inputs / "study.yaml"
    if isinstance(make, str):
        study.write_text(make)
    else:
        study.write_text(yaml.safe_dump(make(inputs)))
    defaults = {
        "--tracking-uri": f"sqlite:///{out}/mlflow.db",
        "--storage": str(out / "results"),
        "--cache": str(out / "cache"),
    }
    given = [arg.format(tmp=inputs, port=free_port()) for arg in extra]
    for flag, value in defaults.items():
        if flag not in given:
            given += [flag, value]
    before = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))

    status = main(["--config", str(study), *given])

    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert list(out.iterdir()) == [], "something was written before the input was refused"
    assert sorted(p.relative_to(inputs) for p in inputs.rglob("*")) == before
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


def test_a_missing_study_file_is_named(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nowhere.yaml")]) == 2
    assert f"{tmp_path / 'nowhere.yaml'}: study file not found" in capsys.readouterr().err
