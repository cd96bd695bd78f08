"""Bad input is refused before any work: one line naming the file, key or path; exit 2; nothing left behind.

Each case runs the real command (``orchestrator.run.main``) in this process on a
study file or a folder that is wrong in one way, and checks that no MLflow store,
cache, results folder or Ray session was made. The autouse fixture of conftest
checks that no Ray or MLflow process was started.
"""

from __future__ import annotations

import copy
import io
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import free_port
from medical_fixtures import write_busi
from PIL import Image
from trial_studies import small_study

from orchestrator.run import main

BASE = small_study(
    "bad",
    variants=["noskip_unet", "unet"],
    datasets={"synthetic": {"levels": [0.5, 1.0]}},
    resources={"cpu": 1, "gpu": 0},
)


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
UNSET_VARIABLES = (
    "SKIPSWEEP_TEST_UNSET",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


def base_study(_: Path) -> dict:
    """The valid study :data:`BASE`, unchanged (for cases whose command-line arguments are wrong)."""
    return copy.deepcopy(BASE)


def texture_file(content: bytes | None, key: str = "foreground", name: str = "texture.png") -> Callable[[Path], dict]:
    """A study whose texture is a file with ``content`` (None: a folder instead of a file)."""

    def make(folder: Path) -> dict:
        target = folder / name
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


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` gray pixels and holds none (what PIL checks on open)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def picture_bytes(pages: list[np.ndarray], mode: str | None = None, fmt: str = "PNG") -> bytes:
    """``pages`` encoded as one image file (several pages: a multi-page file)."""
    first, *rest = (Image.fromarray(page, mode) if mode else Image.fromarray(page) for page in pages)
    buffer = io.BytesIO()
    first.save(buffer, format=fmt, save_all=bool(rest), append_images=rest)
    return buffer.getvalue()


GRAY = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)


def yaml_bytes(encoding: str) -> bytes:
    """BASE as YAML text in ``encoding`` (with a description that latin-1 encodes in one byte)."""
    return yaml.safe_dump({**BASE, "description": "caf\u00e9"}, allow_unicode=True).encode(encoding)


def _bomb_first_image(folder: Path) -> None:
    (folder / "benign" / "benign (1).png").write_bytes(png_header(15000, 15000))


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


# (case id, study maker or raw YAML text, fragments the one-line error must name)
STUDY_CASES = [
    ("yaml-syntax", "study: [unclosed\n", ["study.yaml", "line", "YAML syntax error"]),
    ("duplicate-key", "study: a\nstudy: b\n", ["study.yaml", "duplicate key 'study'"]),
    ("not-a-mapping", "- just\n- a list\n", ["study.yaml", "mapping"]),
    ("empty-file", "", ["study.yaml", "mapping"]),
    ("unknown-top-key", study_with(["epochs"], 3), ["study.yaml", "unknown key 'epochs'"]),
    ("unknown-nested-key", study_with(["training", "epoch"], 3), ["training.epoch", "unknown key"]),
    ("missing-study-name", study_with(["study"], DROP), ["study.yaml", "study"]),
    ("bad-study-name", study_with(["study"], "my study"), ["study.yaml", "study"]),
    ("variants-empty", study_with(["variants"], []), ["variants"]),
    ("variant-unknown", study_with(["variants"], ["resnet"]), ["variants", "resnet"]),
    ("variant-twice", study_with(["variants"], ["unet", "unet"]), ["variants", "twice"]),
    ("seeds-empty", study_with(["seeds"], []), ["seeds"]),
    ("seed-negative", study_with(["seeds"], [-1]), ["seeds", ">= 0"]),
    ("seed-wrong-type", study_with(["seeds"], ["zero"]), ["seeds"]),
    ("epochs-zero", study_with(["training", "epochs"], 0), ["training.epochs"]),
    ("lr-negative", study_with(["training", "learning_rate"], -0.1), ["training.learning_rate"]),
    ("batch-size-text", study_with(["training", "batch_size"], "eight"), ["training.batch_size"]),
    ("test-checkpoint", study_with(["training", "test_checkpoint"], "middle"), ["training.test_checkpoint"]),
    ("image-size-depth", study_with(["image_size"], 34), ["image_size", "divisible"]),
    ("strides-channels", study_with(["model", "strides"], [2]), ["model", "strides"]),
    ("vnet-size", lambda _: {**copy.deepcopy(BASE), "variants": ["vnet"], "image_size": 48}, ["image_size", "32"]),
    ("no-datasets", study_with(["datasets"], {}), ["datasets", "at least one"]),
    ("levels-empty", study_with(["datasets", "synthetic", "levels"], []), ["datasets.synthetic.levels"]),
    ("level-above-one", study_with(["datasets", "synthetic", "levels"], [0.5, 1.5]), ["levels", "1.5"]),
    ("level-twice", study_with(["datasets", "synthetic", "levels"], [0.5, 0.5]), ["levels", "duplicate"]),
    ("mask-extent", study_with(["datasets", "synthetic", "mask", "min_extent"], 0.9), ["mask", "min_extent"]),
    ("test-level-name", study_with(["test_levels"], {"hard": {"kind": "none"}}), ["test_levels", "hard"]),
    ("speckle-no-variance", study_with(["test_levels"], {"harder": {"kind": "speckle"}}), ["variance"]),
    (
        "blur-with-variance",
        study_with(["test_levels"], {"easier": {"kind": "background_blur", "variance": 3}}),
        ["easier"],
    ),
    ("gpu-above-one", study_with(["resources", "gpu"], 1.5), ["resources.gpu"]),
    (
        "texture-missing",
        study_with(["datasets", "synthetic", "background"], "/nonexistent/bark.png"),
        ["datasets.synthetic.background", "/nonexistent/bark.png"],
    ),
    ("texture-not-image", texture_file(b"this is not a picture"), ["datasets.synthetic.foreground", "texture.png"]),
    ("texture-is-folder", texture_file(None, "background"), ["datasets.synthetic.background", "texture.png"]),
    ("medical-missing-folder", medical({"path": "/nonexistent/BUSI"}), ["datasets.busi.path", "/nonexistent/BUSI"]),
    ("medical-unset-variable", medical({"path": "${SKIPSWEEP_TEST_UNSET}/BUSI"}), ["SKIPSWEEP_TEST_UNSET"]),
    ("busi-wrong-layout", busi_study(_remove_benign), ["datasets.busi", "benign"]),
    ("busi-mask-missing", busi_study(_remove_first_mask), ["datasets.busi", "_mask.png"]),
    ("busi-corrupt-image", busi_study(_corrupt_first_image), ["datasets.busi", "benign (1).png"]),
    ("busi-mask-shape", busi_study(_shrink_first_mask), ["datasets.busi", "benign (1)_mask.png"]),
    # inputs that used to pass validation and then failed every trial, or left files behind
    ("geometry-strides", study_with(["model", "strides"], [3, 3]), ["model:", "strides [3, 3]", "32 px"]),
    (
        "geometry-batch-of-one",
        lambda _: {
            **copy.deepcopy(BASE),
            "image_size": 16,
            "model": {"channels": [4, 8, 16, 32, 64], "strides": [2, 2, 2, 2]},
            "training": {"epochs": 1, "batch_size": 1},
        },
        ["model:", "batch_size 1", "more than 1 value per channel"],
    ),
    (
        "geometry-swept-batch-of-one",  # only one value of a sweep axis fails: the probe checks each combination
        lambda _: {
            **copy.deepcopy(BASE),
            "image_size": 16,
            "model": {"channels": [4, 8, 16, 32, 64], "strides": [2, 2, 2, 2]},
            "training": {"epochs": 1, "batch_size": 4},
            "sweep": {"training.batch_size": [4, 1]},
        },
        ["model (sweep: training.batch_size = 1):", "batch_size 1", "more than 1 value per channel"],
    ),
    ("seed-too-large", study_with(["seeds"], [2**70]), ["seeds", "2**63 - 1"]),
    ("data-seed-too-large", study_with(["data_seed"], 2**64), ["data_seed"]),
    (
        "blur-sigma-huge",
        study_with(["test_levels"], {"easier": {"kind": "background_blur", "sigma": 1e12}}),
        ["test_levels: easier.sigma", "image_size 32"],
    ),
    (
        "level-rounds-to-zero",
        study_with(["datasets", "synthetic", "levels"], [1e-7, 0.5]),
        ["datasets.synthetic.levels", "1e-07 is alpha 0"],
    ),
    (
        "released-level-one",
        study_with(["datasets", "synthetic"], {"alpha_convention": "released", "levels": [0.5, 1.0]}),
        ["datasets.synthetic.levels", "level 1.0 is alpha 0", "released"],
    ),
    ("image-size-huge", study_with(["image_size"], 100000), ["image_size", "memory", "available here"]),
    (
        "split-huge",
        lambda _: {**study_with(["datasets", "synthetic", "split", "train"], 10_000_000)(_), "image_size": 256},
        ["datasets.synthetic", "10000008 images", "split", "memory"],
    ),
    (
        "ts-resize-huge",
        study_with(["texture_similarity", "resize_to"], 100000),
        ["texture_similarity.resize_to", "memory"],
    ),
    ("busi-huge-image", busi_study(_bomb_first_image), ["datasets.busi", "benign (1).png", "225000000 pixels"]),
    ("study-name-long", study_with(["study"], "s" * 300), ["study.yaml", "study", "100 characters"]),
    ("study-name-dotdot", study_with(["study"], ".."), ["study", "'..'"]),
    ("study-name-dot", study_with(["study"], "."), ["study", "'.'"]),
    ("study-name-slash", study_with(["study"], "a/b"), ["study.yaml", "study"]),
    ("study-utf16", yaml_bytes("utf-16"), ["study.yaml", "UTF-16", "UTF-8"]),
    ("study-latin1", yaml_bytes("latin-1"), ["study.yaml", "not UTF-8", "0xe9"]),
    ("yaml-too-deep", "study: " + "[" * 20000 + "]" * 20000 + "\n", ["study.yaml", "nested too deeply"]),
    (
        "texture-unset-variable",
        study_with(["datasets", "synthetic", "foreground"], "${SKIPSWEEP_TEST_UNSET}/bark.png"),
        ["datasets.synthetic.foreground", "SKIPSWEEP_TEST_UNSET is not set"],
    ),
    (
        "texture-multipage",
        texture_file(picture_bytes([GRAY, 255 - GRAY], fmt="TIFF"), name="texture.tif"),
        ["datasets.synthetic.foreground", "texture.tif", "2 pages"],
    ),
    (
        "texture-transparent",
        texture_file(picture_bytes([np.stack([GRAY, GRAY // 2], axis=-1)], "LA")),
        ["datasets.synthetic.foreground", "transparent"],
    ),
    ("texture-huge", texture_file(png_header(15000, 15000)), ["datasets.synthetic.foreground", "too large"]),
]

# (case id, command-line arguments given with the valid study BASE, fragments the one-line error must name)
ARGUMENT_CASES = [
    ("tracking-not-answering", ["--tracking-uri", "http://127.0.0.1:{port}"], ["http://127.0.0.1:", "does not answer"]),
    ("tracking-file-store", ["--tracking-uri", "file:///{tmp}/mlruns"], ["file:///", "file stores"]),
    ("tracking-under-a-file", ["--tracking-uri", "sqlite:///{tmp}/a_file/mlflow.db"], ["a_file", "is a file"]),
    ("storage-under-a-file", ["--storage", "{tmp}/a_file/results"], ["storage path", "a_file"]),
    ("cache-under-a-file", ["--cache", "{tmp}/a_file/cache"], ["cache folder", "a_file"]),
    ("checkpoint-every-zero", ["--checkpoint-every", "0"], ["--checkpoint-every"]),
    ("epoch-seconds-bad", ["--epoch-seconds", "unet:3"], ["--epoch-seconds", "unet:3"]),
    # inputs that used to pass validation and then failed every trial, or left files behind
    ("epoch-seconds-nan", ["--epoch-seconds", "unet=nan"], ["--epoch-seconds", "nan"]),
    ("epoch-seconds-inf", ["--epoch-seconds", "unet=inf"], ["--epoch-seconds", "inf"]),
    ("epoch-seconds-negative", ["--epoch-seconds", "unet=-2"], ["--epoch-seconds"]),
    ("epoch-seconds-variant", ["--epoch-seconds", "resnet=3"], ["resnet", "variant"]),
    ("tracking-bad-scheme", ["--tracking-uri", "htp://x"], ["htp://x", "scheme 'htp'"]),
    ("tracking-sqlite-two-slashes", ["--tracking-uri", "sqlite://relative.db"], ["sqlite://relative.db", "sqlite:///"]),
    (
        "tracking-not-mlflow",
        ["--tracking-uri", "http://127.0.0.1:{web}"],
        ["http://127.0.0.1:", "not a working MLflow tracking server", "HTTP 404"],
    ),
    (
        "tracking-needs-login",
        ["--tracking-uri", "http://127.0.0.1:{web}/private"],
        ["HTTP 401", "MLFLOW_TRACKING_USERNAME"],
    ),
    ("storage-file-uri-file", ["--storage", "file://{tmp}/a_file"], ["a_file", "file"]),
    ("storage-bogus-scheme", ["--storage", "bogus://x"], ["--storage", "'bogus'"]),
]

# (case id, study maker or raw YAML text, extra command-line arguments, fragments)
CASES = [(name, make, [], fragments) for name, make, fragments in STUDY_CASES] + [
    (name, base_study, extra, fragments) for name, extra, fragments in ARGUMENT_CASES
]


class _NotMlflow(BaseHTTPRequestHandler):
    """A web server that is up (``/health`` answers) but is not MLflow; ``/private/...`` asks for a login."""

    def do_GET(self) -> None:  # the name http.server calls
        status = 200 if self.path == "/health" else 401 if self.path.startswith("/private") else 404
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"OK" if status == 200 else b"no")

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def not_mlflow_server() -> Iterator[int]:
    """The port of a :class:`_NotMlflow` server on 127.0.0.1, up while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotMlflow)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def input_and_output(tmp_path: Path) -> tuple[Path, Path]:
    """An input folder holding ``a_file`` (a file where a folder should be) and an empty output folder."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    (inputs / "a_file").write_text("a file where a folder should be")
    return inputs, out


def assert_refused(status: int, capsys, fragments: list[str], out: Path) -> None:
    """Exit status 2, one line ``error: ...`` naming every fragment, and nothing written in ``out``."""
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert list(out.iterdir()) == [], "something was written before the input was refused"


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("make", "extra", "fragments"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_work(
    tmp_path: Path, capsys, monkeypatch, make, extra, fragments: list[str]
) -> None:
    for name in UNSET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    inputs, out = input_and_output(tmp_path)
    study = inputs / "study.yaml"
    if isinstance(make, bytes):
        study.write_bytes(make)
    elif isinstance(make, str):
        study.write_text(make)
    else:
        study.write_text(yaml.safe_dump(make(inputs)))
    defaults = {
        "--tracking-uri": f"sqlite:///{out}/mlflow.db",
        "--storage": str(out / "results"),
        "--cache": str(out / "cache"),
    }
    with not_mlflow_server() if any("{web}" in arg for arg in extra) else nullcontext(0) as web:
        given = [arg.format(tmp=inputs, port=free_port(), web=web) for arg in extra]
        for flag, value in defaults.items():
            if flag not in given:
                given += [flag, value]
        before = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))

        status = main(["--config", str(study), *given])

    assert_refused(status, capsys, fragments, out)
    assert sorted(p.relative_to(inputs) for p in inputs.rglob("*")) == before
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


def test_a_missing_study_file_is_named(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nowhere.yaml")]) == 2
    assert f"{tmp_path / 'nowhere.yaml'}: study file not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite MLflow store with one experiment, named unlike its study "it's" (found by its tag)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("its_experiment", tags={"skipsweep.study": "it's"})
    return uri


def _export_folder(manifest: str | None) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / "export").mkdir()
        if manifest is not None:
            (folder / "export" / "export.json").write_text(manifest)

    return make


# (case id, what to make in the input folder, analysis arguments, fragments the one-line error must name)
ANALYSIS_CASES = [
    (
        "export-out-is-a-file",
        None,
        ["export", "--study", "s", "--out", "{tmp}/a_file"],
        ["--out", "a_file", "is a file"],
    ),
    (
        "export-out-under-a-file",
        None,
        ["export", "--study", "s", "--out", "{tmp}/a_file/results"],
        ["--out", "a_file", "is a file"],
    ),
    (
        "export-study-with-quotes",
        None,
        ["export", "--study", "x' OR name = 'y", "--out", "{out}/export"],
        ["no MLflow experiment for study", "x' OR name = 'y"],
    ),
    ("report-broken-manifest", _export_folder("{broken"), ["report", "{tmp}/export"], ["export.json", "JSON"]),
    ("report-manifest-not-object", _export_folder("[1, 2]"), ["report", "{tmp}/export"], ["export.json", "object"]),
    ("report-resamples-zero", _export_folder(None), ["report", "{tmp}/export", "--resamples", "0"], ["--resamples"]),
    ("report-seed-negative", _export_folder(None), ["report", "{tmp}/export", "--seed", "-1"], ["--seed"]),
]


@pytest.mark.parametrize(
    ("make", "args", "fragments"), [c[1:] for c in ANALYSIS_CASES], ids=[c[0] for c in ANALYSIS_CASES]
)
def test_bad_analysis_input_is_refused_before_any_work(
    tmp_path: Path, capsys, store: str, make, args: list[str], fragments: list[str]
) -> None:
    from analysis.__main__ import main as analysis_main

    inputs, out = input_and_output(tmp_path)
    if make is not None:
        make(inputs)
    before = {p.relative_to(inputs): p.read_bytes() if p.is_file() else None for p in inputs.rglob("*")}
    given = [arg.format(tmp=inputs, out=out) for arg in args]
    if given[0] == "export":
        given += ["--tracking-uri", store]

    status = analysis_main(given)

    assert_refused(status, capsys, fragments, out)
    assert {p.relative_to(inputs): p.read_bytes() if p.is_file() else None for p in inputs.rglob("*")} == before


def test_a_study_name_with_a_quote_is_found_by_its_tag(store: str) -> None:
    from analysis.export import open_study_experiment, study_tag_filter

    client, experiment_id = open_study_experiment("it's", store)
    assert client.get_experiment(experiment_id).name == "its_experiment"
    assert study_tag_filter("it's") == 'tags.`skipsweep.study` = "it\'s"'
    assert study_tag_filter("a'b\"c") is None


def test_a_texture_path_expands_variables(tmp_path: Path, monkeypatch) -> None:
    from trainables.config import load_study

    (tmp_path / "textures").mkdir()
    (tmp_path / "textures" / "bark.png").write_bytes(picture_bytes([GRAY]))
    monkeypatch.setenv("SKIPSWEEP_TEXTURES", str(tmp_path / "textures"))
    study = copy.deepcopy(BASE)
    study["datasets"]["synthetic"]["background"] = "${SKIPSWEEP_TEXTURES}/bark.png"
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    assert load_study(tmp_path / "study.yaml").datasets.synthetic.background == str(tmp_path / "textures" / "bark.png")


def test_an_opaque_gray_alpha_texture_is_read_as_its_gray_channel(tmp_path: Path) -> None:
    from trainables.datasets.synthetic.generate import load_texture

    path = tmp_path / "gray_alpha.png"
    path.write_bytes(picture_bytes([np.stack([GRAY, np.full_like(GRAY, 255)], axis=-1)], "LA"))
    np.testing.assert_allclose(load_texture(str(path)), GRAY / 255.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seconds", ["unet=2.5", "unet=2.5,noskip_unet=1"])
def test_good_epoch_seconds_are_read(seconds: str) -> None:
    from orchestrator.run import _epoch_seconds

    assert _epoch_seconds(seconds)["unet"] == 2.5


def test_the_memory_estimate_grows_with_the_data() -> None:
    from orchestrator.preflight_sizes import format_bytes, synthetic_bytes
    from trainables.config import parse_study

    small = parse_study(copy.deepcopy(BASE))
    larger = parse_study({**copy.deepcopy(BASE), "image_size": 64})
    assert synthetic_bytes(larger) == 4 * synthetic_bytes(small)
    assert 16 * 32 * 32 * 25 <= synthetic_bytes(small) < 10**6  # 16 images, 2 levels: well under a megabyte
    assert format_bytes(3 * 2**40) == "3.0 TiB" and format_bytes(512) == "512 B"


@pytest.mark.slow
def test_a_real_mlflow_server_passes_the_probe(mlflow_server) -> None:
    from orchestrator.preflight import check_tracking_uri

    check_tracking_uri(mlflow_server.uri)
