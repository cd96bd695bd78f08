"""An export's files and a report's files are each one unit, and one command at a time writes into a folder.

Each fault runs the real command (``python -m analysis ...``) in a subprocess. An interruption is a real SIGINT or
SIGTERM that the command's process sends itself right after its first file is written (a wrapper patches that
writer, then calls ``analysis.__main__.main``), so it lands at the same point on every run. The toy study and its
store come from tests/analysis_fixtures.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from analysis.__main__ import main
from analysis.export import export_study
from analysis.frames import (
    LOCK_FILE,
    MANIFEST_FILE,
    PER_IMAGE_FILE,
    RUNS_FILE,
    FolderBusyError,
    UnverifiedExportWarning,
    load_export,
)
from analysis.report import build_report

try:
    from analysis_fixtures import STUDY, build_toy_store, busi_images, create_study, log_trial
    from conftest import ROOT, subprocess_env
except ImportError:  # tests/ imported as a package
    from tests.analysis_fixtures import STUDY, build_toy_store, busi_images, create_study, log_trial
    from tests.conftest import ROOT, subprocess_env

OTHER = "other_study"  # two BUSI runs: a second study to export over the toy one
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
SIGNALS = [  # SIGTERM takes the same path as Ctrl-C: the fast tier runs Ctrl-C only
    pytest.param(signal.SIGINT, id="sigint"),
    pytest.param(signal.SIGTERM, id="sigterm", marks=pytest.mark.slow),
]
INTERRUPT_AFTER_FIRST_CALL = """
import importlib, os, sys
module, name, signum = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = importlib.import_module(module)
real = getattr(target, name)
def first_then_signal(*args, **kwargs):
    result = real(*args, **kwargs)
    os.kill(os.getpid(), signum)
    return result
setattr(target, name, first_then_signal)
from analysis.__main__ import main
sys.exit(main(sys.argv[4:]))
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mlflow")
    uri = build_toy_store(root)
    client = MlflowClient(tracking_uri=uri)
    experiment = create_study(client, root, OTHER)
    for variant in ("noskip_unet", "unet"):
        log_trial(
            client, experiment, study=OTHER, dataset="busi", variant=variant, seed=0, per_image=busi_images(variant, 0)
        )
    return uri


@pytest.fixture(scope="module")
def toy_folder(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete export of the toy study with its report (baseline noskip_unet); tests work on copies."""
    folder = tmp_path_factory.mktemp("toy") / "results"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_study(STUDY, folder, tracking_uri=store)
        build_report(folder, n_resamples=20)
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "results"))


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def analysis(*args: str | Path, interrupt: tuple[str, str, int] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m analysis ARGS``; with ``interrupt=(module, function, signal)``, signalled after that call."""
    given = [str(arg) for arg in args]
    if interrupt is None:
        command = [sys.executable, "-m", "analysis", *given]
    else:
        module, function, signum = interrupt
        command = [sys.executable, "-c", INTERRUPT_AFTER_FIRST_CALL, module, function, str(int(signum)), *given]
    return subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)


def one_line(stderr: str, prefix: str) -> str:
    """The only line of ``stderr`` that is not progress or a warning; it starts with ``prefix``."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith(("read ", "warning: "))]
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    return lines[0]


@pytest.mark.parametrize("signum", SIGNALS)
def test_an_export_stopped_after_its_first_file_ends_in_one_line_and_is_refused_by_report(
    store: str, toy_folder: Path, tmp_path: Path, signum: int
) -> None:
    folder = copy_of(toy_folder, tmp_path)
    stop = ("analysis.export", "_write_parquet", signum)
    stopped = analysis("export", "--study", OTHER, "--out", folder, "--tracking-uri", store, interrupt=stop)

    assert stopped.returncode == EXIT_STATUS[signum], stopped.stderr
    assert str(folder) in one_line(stopped.stderr, "interrupted: the export into")
    assert set(pd.read_parquet(folder / RUNS_FILE)["run_name"]) == {"noskip_unet s0 busi", "unet s0 busi"}
    assert [path.name for path in folder.glob(".*")] == []  # no temporary file, no lock left behind
    report_before = (folder / "report.md").read_bytes()

    refused = analysis("report", folder, "--resamples", "20")
    assert refused.returncode == 2, refused.stderr
    line = one_line(refused.stderr, "error: ")
    assert MANIFEST_FILE in line and "interrupted" in line and "analysis export" in line
    assert (folder / "report.md").read_bytes() == report_before


def test_a_file_of_another_export_is_refused_naming_it_until_the_study_is_exported_again(
    store: str, toy_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = copy_of(toy_folder, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_study(OTHER, tmp_path / "other", tracking_uri=store)
    shutil.copy(tmp_path / "other" / PER_IMAGE_FILE, folder / PER_IMAGE_FILE)  # the mix: another per-image
    before = snapshot(folder)

    assert main(["report", str(folder), "--resamples", "20"]) == 2
    line = one_line(capsys.readouterr().err, "error: ")
    assert f"{folder / PER_IMAGE_FILE} does not match {MANIFEST_FILE}" in line
    assert f"--study {STUDY} --out {folder}" in line
    assert snapshot(folder) == before

    assert main(["export", "--study", OTHER, "--out", str(folder), "--tracking-uri", store]) == 0
    assert load_export(folder).study == OTHER


def test_an_export_without_file_hashes_is_still_read_with_a_warning(toy_folder: Path, tmp_path: Path) -> None:
    folder = copy_of(toy_folder, tmp_path)
    checked = load_export(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    del manifest["files"]  # as an export written before hashes were recorded
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))

    with pytest.warns(UnverifiedExportWarning, match="records no file hashes"):
        unchecked = load_export(folder)
    pd.testing.assert_frame_equal(unchecked.per_image, checked.per_image)


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_report_stopped_half_way_leaves_the_previous_report_whole(
    toy_folder: Path, tmp_path: Path, signum: int
) -> None:
    folder = copy_of(toy_folder, tmp_path)
    before = snapshot(folder)
    stop = ("analysis.report.figures", "save_figure", signum)
    stopped = analysis("report", folder, "--baseline", "unet", "--resamples", "20", interrupt=stop)

    assert stopped.returncode == EXIT_STATUS[signum], stopped.stderr
    assert str(folder) in one_line(stopped.stderr, "interrupted: the report in")
    assert snapshot(folder) == before  # every figure and table as it was, no staging folder, no lock


def test_a_second_report_while_one_runs_exits_2_naming_it_and_the_first_removes_older_tables(
    store: str, toy_folder: Path, tmp_path: Path
) -> None:
    folder = copy_of(toy_folder, tmp_path)
    assert (folder / "tables" / "relative_matrix_synthetic_unet.csv").is_file()  # the noskip_unet baseline's
    first = subprocess.Popen(
        [sys.executable, "-m", "analysis", "report", str(folder), "--baseline", "unet", "--resamples", "20"],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        holder = wait_for_lock(folder / LOCK_FILE, first)
        assert holder == f"analysis report (pid {first.pid})"
        os.kill(first.pid, signal.SIGSTOP)  # hold the first report inside its lock while the others try
        try:
            second = analysis("report", folder, "--baseline", "noskip_unet", "--resamples", "20")
            with pytest.raises(FolderBusyError, match="in use by analysis report"):
                export_study(OTHER, folder, tracking_uri=store)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        _, first_err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    assert second.returncode == 2, second.stderr
    line = one_line(second.stderr, "error: ")
    assert f"{folder} is in use by analysis report (pid {first.pid})" in line
    assert first.returncode == 0, first_err
    assert "; baseline: unet\n" in (folder / "report.md").read_text()
    tables = {path.name for path in (folder / "tables").iterdir()}
    assert "relative_matrix_synthetic_noskip_unet.csv" in tables
    assert "relative_matrix_synthetic_unet.csv" not in tables  # an earlier baseline's table is removed
    assert [path.name for path in folder.glob(".*")] == []


def wait_for_lock(lock: Path, process: subprocess.Popen, timeout: float = 60.0) -> str:
    """The holder named in ``lock`` once ``process`` holds it; fails if the process ends without taking it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            holder = lock.read_text()
        except FileNotFoundError:
            holder = ""
        if "pid" in holder:
            return holder
        if process.poll() is not None:
            pytest.fail(f"the report ended (status {process.returncode}) without taking {lock}")
        time.sleep(0.01)
    pytest.fail(f"{lock} was not taken within {timeout} s")
