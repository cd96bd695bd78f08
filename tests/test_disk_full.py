"""A full disk is reported as such: one line naming the path and its free space, the run tagged with that reason.

The disk is a real one: a small tmpfs mounted for the test (root only; the test is skipped where mounting is not
allowed) and filled to the last byte while the study runs.
"""

from __future__ import annotations

import errno
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import ROOT, subprocess_env
from mlflow.tracking import MlflowClient
from sweeps import epochs_logged, orchestrate_command, trial_runs, wait_for, write_study

from trainables.files import disk_full
from trainables.schema import ERROR_TAG


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB file system of its own, unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write into ``folder`` until its disk is full; the file that holds the space."""
    filler = folder / "filler"
    with filler.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    try:  # the last bytes, smaller than one block
        with filler.open("ab") as file:
            while True:
                file.write(b"\0" * 512)
                file.flush()
    except OSError:
        pass
    return filler


def test_a_write_on_a_full_disk_is_named_with_its_free_space(small_disk: Path, tmp_path: Path) -> None:
    fill(small_disk)
    with pytest.raises(OSError) as caught:
        (small_disk / "state.pt").write_bytes(b"x" * 100_000)
    line = disk_full(caught.value, [tmp_path / "roomy", small_disk / "work"])
    assert line is not None and line.startswith(f"no space left on device: {small_disk}/work has 0.0 MB free (of 4.0")
    torch_says = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    assert disk_full(torch_says, [small_disk]).startswith("no space left on device")  # torch keeps no errno
    assert disk_full(torch_says, [tmp_path]) is None  # the same words on a roomy disk are another fault
    assert disk_full(ValueError("a bad value"), [small_disk]) is None


@pytest.mark.slow
def test_a_disk_that_fills_during_a_study_stops_it_in_one_line_and_the_rerun_completes(
    small_disk: Path, tmp_path: Path
) -> None:
    epochs = 150  # long enough to be filled under (a 32 px epoch over 8 images takes ~0.1 s)
    resources = {"cpu": 1, "gpu": 0, "max_failures": 1}
    data = {"synthetic": {"levels": [1.0], "split": {"train": 8, "val": 4, "test": 4}}}
    study = write_study(tmp_path, "full", epochs=epochs, variants=["unet"], resources=resources, datasets=data)
    command = orchestrate_command(study, tmp_path)
    command[command.index("--storage") + 1] = str(small_disk / "results")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    filled: list[Path] = []

    def fill_once_training() -> None:
        wait_for(lambda: list(small_disk.glob("results/full/work/*/state.pt")), 180, "the trial's first state", 0.1)
        filled.append(fill(small_disk))

    filler = threading.Thread(target=fill_once_training)
    filler.start()
    result = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    filler.join()
    assert result.returncode == 74, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]  # the traceback is in MLflow
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"[full] stopped: no space left on device: {small_disk}/results"), last
    assert "MB free (of 4.0 MB); free space, then run the same command" in last, last
    (run,) = trial_runs(uri, "full")
    assert run.info.status == "FAILED"
    assert run.data.tags[ERROR_TAG].startswith(f"no space left on device: {small_disk}/results/full/work/")

    filled[0].unlink()
    again = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    (run,) = trial_runs(uri, "full")
    assert run.info.status == "FINISHED" and ERROR_TAG not in run.data.tags
    assert epochs_logged(MlflowClient(uri), run.info.run_id) == list(range(epochs))
