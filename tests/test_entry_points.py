"""Every command answers ``--help`` with its usage, and the data preview draws a medical study too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from trainables.datasets.__main__ import main as data_main
from trainables.datasets.medical.preview import spread

try:
    from medical_fixtures import write_all
except ImportError:  # tests/ imported as a package
    from tests.medical_fixtures import write_all

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TINY = ROOT / "conf" / "example_medical_tiny.yaml"

BENCH = [  # each loads torch and MONAI before its arguments: seconds apiece, so in the full suite only
    "bench.epoch_times",
    "bench.gpu",
    "bench.learns_easiest",
    "bench.precision",
    "bench.speed",
    "bench.sweep",
    "bench.sweep_quick",
    "bench.system_metrics_cost",
    "bench.tracking_latency",
    "bench.tracking_load",
]
MODULES = [
    ["orchestrator.run"],
    ["analysis"],
    ["analysis", "export"],
    ["analysis", "report"],
    ["trainables.config"],
    ["trainables.datasets"],
    ["trainables.datasets", "prepare"],
    ["trainables.datasets", "preview"],
    *(pytest.param([name], marks=pytest.mark.slow) for name in BENCH),
]
SCRIPTS = ["skipsweep-run", "skipsweep-data", "skipsweep-analysis"]  # [project.scripts]


def help_of(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", MODULES, ids=lambda module: " ".join(module))
def test_every_module_prints_its_usage_on_help(module: list[str]) -> None:
    done = help_of([sys.executable, "-m", *module])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {' '.join(module)}"), done.stdout[:200]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_installed_script_prints_its_usage_on_help(script: str) -> None:
    if not (BIN / script).is_file():
        pytest.skip(f"{script} is not installed next to {sys.executable} (pip install -e .)")
    done = help_of([str(BIN / script)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: "), done.stdout[:200]


def test_config_without_a_study_exits_2_with_the_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trainables.config"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m trainables.config")


@pytest.mark.parametrize(
    ("count", "expected"),
    [(3, [0, 4, 9]), (1, [0]), (10, list(range(10))), (12, list(range(10)))],
)
def test_spread_picks_evenly_spaced_entries(count: int, expected: list[int]) -> None:
    assert_array_equal(spread(np.arange(10), count), expected)


@pytest.fixture(scope="module")
def medical_data(tmp_path_factory) -> Path:
    """The four tiny medical data sets, SKIPSWEEP_DATA pointing at them."""
    root = tmp_path_factory.mktemp("data")
    write_all(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKIPSWEEP_DATA", str(root))
        yield root


@pytest.mark.parametrize("dataset", ["spleen", "busi"])
def test_preview_of_a_medical_study_draws_splits_levels_and_ts(medical_data: Path, dataset: str, capsys) -> None:
    out = medical_data.parent / f"{dataset}.png"
    cache = medical_data.parent / "cache"
    argv = ["preview", "--config", str(TINY), "--cache", str(cache), "--dataset", dataset, "--out", str(out)]
    assert data_main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000
    printed = capsys.readouterr().out
    assert f"{dataset}: " in printed and "hardest" in printed and "easiest" in printed


def test_preview_without_dataset_draws_the_first_medical_one(medical_data: Path, capsys) -> None:
    out = medical_data.parent / "default.png"
    assert (
        data_main(["preview", "--config", str(TINY), "--cache", str(medical_data.parent / "cache"), "--out", str(out)])
        == 0
    )
    assert out.is_file()
    assert "busi: " in capsys.readouterr().out


def test_preview_of_a_data_set_the_study_lacks_exits_2(medical_data: Path, capsys) -> None:
    out = medical_data.parent / "none.png"
    argv = ["preview", "--config", str(TINY), "--cache", str(medical_data.parent / "cache"), "--dataset", "synthetic"]
    assert data_main([*argv, "--out", str(out)]) == 2
    assert "busi, spleen, heart, glas" in capsys.readouterr().err
    assert not out.exists()
