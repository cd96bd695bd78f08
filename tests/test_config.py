"""Study files: every shipped file loads; every bad input is refused naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from medical_fixtures import write_all
from pydantic import ValidationError

from trainables.config import StudyConfigError, load_study, parse_study
from trainables.datasets.registry import check_data

CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.fixture(scope="module", autouse=True)
def medical_data(tmp_path_factory) -> Path:
    """The shipped studies read medical data from $SKIPSWEEP_DATA: point it at tiny stand-ins in the real layouts."""
    root = tmp_path_factory.mktemp("medical")
    write_all(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKIPSWEEP_DATA", str(root))
        yield root


def minimal() -> dict:
    return {
        "study": "t",
        "variants": ["unet"],
        "seeds": [0],
        "image_size": 64,
        "datasets": {"synthetic": {"levels": [0.5, 0.9]}},
    }


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_study_loads(path: Path) -> None:
    config = load_study(path)
    assert config.study == path.stem
    assert config.datasets.names


def test_full_protocol_numbers() -> None:
    config = load_study(CONF / "miccai2023.yaml")
    assert config.variants == ("noskip_unet", "unet", "attention_unet")
    assert config.datasets.synthetic.alphas == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert config.seeds == (0, 1, 2)
    assert (config.training.epochs, config.training.learning_rate, config.training.batch_size) == (100, 1e-3, 8)
    assert config.image_size == 256 and config.model.channels == (16, 32, 64, 128, 256)
    assert config.datasets.medical == ("busi", "spleen", "heart")
    spleen = config.for_dataset("spleen")
    assert spleen.model.channels == (16, 32, 64, 128, 256, 512) and spleen.training.learning_rate == 1e-2
    assert (config.datasets.spleen.slice_axis, config.datasets.heart.slice_axis) == ("axial", "sagittal")


def test_the_glas_study_keeps_the_medical_protocol_and_measures_ts_as_the_cpu_synthetic_study() -> None:
    from trainables.datasets.ts_axis import comparable_ts

    config = load_study(CONF / "glas_cpu.yaml")
    assert config.datasets.names == ("glas",) and len(config.seeds) == 5
    assert config.model.channels == (16, 32, 64, 128, 256, 512) and config.training.learning_rate == 1e-2
    assert (config.training.epochs, config.training.test_checkpoint) == (100, "best")
    assert config.evaluation.surface_metrics and config.evaluation.hausdorff_percentile == 100
    assert list(config.test_levels) == ["hardest", "harder", "in_domain", "easier"]
    assert comparable_ts(config, load_study(CONF / "miccai2023_cpu.yaml")) is None  # docs/glas_cpu's TS figure


def test_released_convention_inverts_alpha_and_preset_fills_lbp() -> None:
    config = load_study(CONF / "journal2025.yaml")
    alphas = config.datasets.synthetic.alphas
    assert len(alphas) == 15 and alphas[0] == pytest.approx(0.02) and alphas[-1] == pytest.approx(0.9)
    ts = config.texture_similarity
    assert (ts.lbp_points, ts.lbp_radius, ts.lbp_method, ts.kl_direction, ts.resize_to) == (
        24,
        3.0,
        "uniform",
        "foreground_background",
        256,
    )
    assert list(config.test_levels) == ["hardest", "harder", "in_domain", "easier", "easiest"]


def test_preset_keys_can_be_overridden() -> None:
    data = minimal() | {"texture_similarity": {"preset": "released", "lbp_points": 16}}
    assert parse_study(data).texture_similarity.lbp_points == 16


def test_config_is_frozen() -> None:
    config = parse_study(minimal())
    with pytest.raises(ValidationError):
        config.study = "other"


def test_config_hash_ignores_the_grid_but_not_the_protocol() -> None:
    base = parse_study(minimal())
    more_seeds = parse_study(minimal() | {"seeds": [0, 1], "variants": ["unet", "noskip_unet"]})
    other_lr = parse_study(minimal() | {"training": {"learning_rate": 0.01}})
    assert base.config_hash() == more_seeds.config_hash()
    assert base.config_hash() != other_lr.config_hash()


def _with(path: tuple, value) -> dict:
    data = minimal()
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


BAD = [
    ("unknown top key", _with(("epochs",), 5), "epochs"),
    ("unknown nested key", _with(("training", "epoch"), 5), "training.epoch"),
    ("alpha zero", _with(("datasets", "synthetic", "levels"), [0.0, 0.5]), "datasets.synthetic.levels"),
    ("alpha above one", _with(("datasets", "synthetic", "levels"), [0.5, 1.5]), "datasets.synthetic.levels"),
    ("duplicate levels", _with(("datasets", "synthetic", "levels"), [0.5, 0.5]), "duplicate"),
    ("empty levels", _with(("datasets", "synthetic", "levels"), []), "datasets.synthetic.levels"),
    ("negative seed", _with(("seeds",), [-1]), "seeds"),
    ("gpu fraction above one", _with(("resources", "gpu"), 1.5), "resources.gpu"),
    ("gpu fraction negative", _with(("resources", "gpu"), -0.1), "resources.gpu"),
    ("unknown variant", _with(("variants",), ["resnet"]), "variants"),
    ("unknown data set", _with(("datasets", "imagenet"), {}), "imagenet"),
    ("no data set", _with(("datasets",), {}), "datasets"),
    ("unknown test level", _with(("test_levels", "hardish"), {"kind": "none"}), "test_levels"),
    ("speckle without variance", _with(("test_levels", "harder"), {"kind": "speckle"}), "test_levels.harder"),
    ("strides do not match channels", _with(("model", "strides"), [2, 2]), "model"),
    ("wrong type", _with(("training", "epochs"), "many"), "training.epochs"),
    ("image size not divisible", _with(("image_size",), 50), "image_size"),
    ("unknown alpha convention", _with(("datasets", "synthetic", "alpha_convention"), "inverse"), "alpha_convention"),
]


@pytest.mark.parametrize(("data", "key"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_study_is_refused_naming_file_and_key(tmp_path: Path, data: dict, key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(StudyConfigError) as error:
        load_study(path)
    message = str(error.value)
    assert str(path) in message
    assert key in message


def test_missing_texture_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(("datasets", "synthetic", "foreground"), "textures/nope.png")))
    study = load_study(path)  # the schema reads no files: the data check does, before a study runs
    with pytest.raises(StudyConfigError, match=r"bad\.yaml: datasets\.synthetic\.foreground.*nope\.png"):
        check_data(study, str(path))


def test_texture_file_is_resolved_relative_to_the_study(tmp_path: Path) -> None:
    (tmp_path / "textures").mkdir()
    (tmp_path / "textures" / "fg.png").write_bytes(b"not checked here")
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(_with(("datasets", "synthetic", "foreground"), "textures/fg.png")))
    assert load_study(path).datasets.synthetic.foreground == str(tmp_path / "textures" / "fg.png")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("study: t\nvariants: [unet\nseeds: [0]\n")
    with pytest.raises(StudyConfigError, match=r"broken\.yaml: line \d+, column \d+: YAML syntax error"):
        load_study(path)


def test_duplicate_yaml_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("study: t\nseeds: [0]\nseeds: [1]\n")
    with pytest.raises(StudyConfigError, match=r"line 3.*duplicate key 'seeds'"):
        load_study(path)


def test_missing_file() -> None:
    with pytest.raises(StudyConfigError, match="not found"):
        load_study("/nonexistent/study.yaml")
