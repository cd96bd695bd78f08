"""``./skipsweep``: installs only when needed, picks the torch build, passes arguments through.

The script runs in a copy of the repository's top level whose ``.venv/bin/python`` is a stand-in
that logs its arguments, so no test installs anything (the fresh-clone timings in README.md are
the real installs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Logs each call's arguments as one JSON line; fails `pip install` when FAIL_PIP is set.
STAND_IN = """#!/usr/bin/env python3
import json, os, subprocess, sys
args = sys.argv[1:]
if args[:1] == ["-c"]:
    os.execv(sys.executable, [sys.executable, *args])   # the script's own hashing one-liner
with open(os.environ["CALLS"], "a") as log:
    log.write(json.dumps(args) + "\\n")
sys.exit(1 if os.environ.get("FAIL_PIP") and args[:2] == ["-m", "pip"] else 0)
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The script and pyproject.toml in a folder whose .venv holds the stand-in Python."""
    shutil.copy2(ROOT / "skipsweep", tmp_path / "skipsweep")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STAND_IN)
    python.chmod(0o755)
    return tmp_path


def skipsweep(checkout: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run the script; its exit status and the stand-in's calls (pip, pytest, ...) in order."""
    calls = checkout / "calls.jsonl"
    calls.unlink(missing_ok=True)
    environment = {**os.environ, "CALLS": str(calls), "SKIPSWEEP_TORCH": "cpu", **env}
    done = subprocess.run(
        [str(checkout / "skipsweep"), *args], cwd="/", env=environment, capture_output=True, text=True, timeout=60
    )
    logged = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return done, logged


def pip_calls(calls: list[list[str]]) -> list[list[str]]:
    return [call[3:] for call in calls if call[:3] == ["-m", "pip", "install"]]


def test_first_call_installs_cpu_torch_then_the_project_then_runs(checkout: Path) -> None:
    done, calls = skipsweep(checkout, "run", "--config", "conf/x.yaml")
    assert done.returncode == 0, done.stderr
    assert pip_calls(calls) == [
        ["--quiet", "--upgrade", "pip"],
        ["--quiet", "torch==2.13.0"],
        ["--quiet", "-e", ".[dev]"],
    ]
    assert calls[-1] == ["-m", "orchestrator.run", "--config", "conf/x.yaml"]


def test_second_call_installs_nothing_until_pyproject_changes(checkout: Path) -> None:
    skipsweep(checkout, "setup")
    done, calls = skipsweep(checkout, "run")
    assert done.returncode == 0 and calls == [["-m", "orchestrator.run"]]
    with (checkout / "pyproject.toml").open("a") as file:
        file.write("\n# a change\n")
    _, calls = skipsweep(checkout, "run")
    assert len(pip_calls(calls)) == 3


def test_test_runs_ruff_then_pytest_with_the_arguments_kept_whole(checkout: Path) -> None:
    skipsweep(checkout, "setup")
    done, calls = skipsweep(checkout, "test", "-m", "not slow", "tests/test_config.py")
    assert done.returncode == 0, done.stderr
    assert calls == [
        ["-m", "ruff", "check", "."],
        ["-m", "ruff", "format", "--check", "."],
        ["-m", "pytest", "-q", "-m", "not slow", "tests/test_config.py"],
    ]


def test_a_gpu_gets_the_cuda_torch_of_the_project_range(checkout: Path) -> None:
    _, calls = skipsweep(checkout, "setup", SKIPSWEEP_TORCH="cuda")
    assert pip_calls(calls) == [["--quiet", "--upgrade", "pip"], ["--quiet", "-e", ".[dev,gpu]"]]
    _, calls = skipsweep(checkout, "setup", SKIPSWEEP_TORCH="cpu")  # another build: installed again
    assert ["--quiet", "torch==2.13.0"] in pip_calls(calls)


def test_a_failed_install_is_tried_again_next_time(checkout: Path) -> None:
    done, _ = skipsweep(checkout, "setup", FAIL_PIP="1")
    assert done.returncode != 0
    assert not (checkout / ".venv" / ".skipsweep-setup").exists()
    done, calls = skipsweep(checkout, "setup")
    assert done.returncode == 0 and len(pip_calls(calls)) == 3


@pytest.mark.parametrize(("args", "status"), [((), 2), (("deploy",), 2), (("--help",), 0)])
def test_usage_without_a_known_command(checkout: Path, args: tuple[str, ...], status: int) -> None:
    done, calls = skipsweep(checkout, *args)
    assert done.returncode == status
    assert "./skipsweep test" in done.stderr
    assert calls == []


def test_ci_runs_exactly_the_test_command() -> None:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == 'exec ./skipsweep test "$@"'


def test_readme_opens_with_the_two_commands() -> None:
    first_block = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["./skipsweep run", "./skipsweep test"]


def test_pre_commit_runs_the_ruff_version_the_dev_extras_pin() -> None:
    pinned = re.search(r'"ruff==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    rev = re.search(r"ruff-pre-commit\n\s+rev: v([0-9.]+)", (ROOT / ".pre-commit-config.yaml").read_text())
    assert pinned and rev and pinned.group(1) == rev.group(1)
