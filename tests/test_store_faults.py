"""The driver's first contact with the tracking store: inside the study lock and the retries, one line when it fails.

Each fault runs the real command in a process of its own against a real SQLite file (MLflow caches a store's
engine per process, so an in-process driver would not open the store again).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, subprocess_env
from sweeps import orchestrate_command
from trial_studies import small_study

from orchestrator.expand import expand
from orchestrator.ownership import claim_study
from trainables.config import load_study
from trainables.tracking import RetryPolicy, UnusableStoreError, open_experiment
from trainables.trial import run_trial

QUICK = RetryPolicy(attempts=2, first_wait=0.01, max_wait=0.01)


def study_file(folder: Path, name: str = "store") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(small_study(name, training={"epochs": 1})))
    return path


def driver(study: Path, folder: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        orchestrate_command(study, folder),
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def refusal(result: subprocess.CompletedProcess) -> str:
    """The driver's only stderr line, checked to be one ``error:`` line and no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def older_schema_store(database: Path) -> str:
    """A store of today's MLflow whose schema revision is set back one step: what an older MLflow left.

    Made in another process: MLflow checks a store's schema once per process and URI.
    """
    make = "import sys; from mlflow.tracking import MlflowClient; MlflowClient(sys.argv[1]).search_experiments()"
    subprocess.run([sys.executable, "-c", make, f"sqlite:///{database}"], check=True, capture_output=True)
    import mlflow
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(Path(mlflow.__file__).parent / "store" / "db_migrations"))
    older = scripts.get_revision(scripts.get_current_head()).down_revision
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (older,))
    return older


def schema_revision(database: Path) -> str:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_a_file_that_is_not_a_database_is_refused_before_data_preparation(tmp_path: Path) -> None:
    (tmp_path / "mlflow.db").write_text("these are my notes, not a database\n")
    line = refusal(driver(study_file(tmp_path), tmp_path))
    assert line == f"error: tracking URI sqlite:///{tmp_path}/mlflow.db: {tmp_path}/mlflow.db is not an SQLite " + (
        "database, so not an MLflow store"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mlflow.db", "store.yaml"]  # no cache, no results


def test_a_database_of_another_program_is_refused_and_left_alone(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        connection.execute("CREATE TABLE patients (id INTEGER)")
    before = (tmp_path / "mlflow.db").read_bytes()
    line = refusal(driver(study_file(tmp_path), tmp_path))
    assert line.endswith("mlflow.db is an SQLite database but not an MLflow store")
    assert (tmp_path / "mlflow.db").read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mlflow.db", "store.yaml"]  # before data preparation


def test_an_older_schema_is_refused_with_the_exact_upgrade_command_and_left_unchanged(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    older = older_schema_store(database)
    line = refusal(driver(study_file(tmp_path), tmp_path))
    assert f"the store was made by an older MLflow (schema {older}" in line
    assert line.endswith(f"back it up, then run: mlflow db upgrade sqlite:///{database}")
    assert schema_revision(database) == older and not (tmp_path / "cache").exists()


def test_the_first_store_call_refuses_what_preflight_could_not_check(tmp_path: Path) -> None:
    """Under the study's lock (preflight skips a store while another driver of the study holds the lock)."""
    database = tmp_path / "old.db"
    older = older_schema_store(database)
    upgrade = r"older MLflow \(schema \w+, .*\); back it up, then run: mlflow db upgrade sqlite:///"
    with pytest.raises(UnusableStoreError, match=upgrade):  # after the retries: not a schema being migrated
        claim_study("x", str(tmp_path / "results"), f"sqlite:///{database}", "x", settle=0, retry_policy=QUICK)
    assert schema_revision(database) == older
    (tmp_path / "notes.db").write_text("not a database")
    with pytest.raises(UnusableStoreError, match=r"notes.db: not an MLflow store \(file is not a database\)"):
        open_experiment(f"sqlite:///{tmp_path}/notes.db", "x")


@pytest.mark.slow
def test_drivers_started_together_on_a_fresh_store_give_one_owner_and_one_line_each(tmp_path: Path) -> None:
    """Four drivers of one study at once, two storage folders: one owns it, the others are refused in one line."""
    claim = (
        "import sys, time\n"
        "from orchestrator.ownership import claim_study\n"
        "from trainables.config import StudyConfigError\n"
        "try:\n"
        "    lease = claim_study('race', sys.argv[1], sys.argv[2], 'race')\n"
        "except StudyConfigError as error:\n"
        "    print('refused:', error); sys.exit(2)\n"
        "print('owner', flush=True); time.sleep(4); lease.release()\n"
    )
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", claim, str(tmp_path / f"results{index % 2}"), uri],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in drivers]
    codes = [process.returncode for process in drivers]
    assert all("Traceback" not in err for _, err in outputs), [err[-2000:] for _, err in outputs]
    assert sorted(codes) == [0, 2, 2, 2], outputs
    assert all(out.startswith("refused: ") for (out, _), code in zip(outputs, codes, strict=True) if code == 2)


@pytest.mark.slow
def test_a_store_locked_while_the_driver_starts_is_waited_for(tmp_path: Path) -> None:
    """Another writer holds the store for 25 s, past SQLite's busy timeout: the driver waits through its retries."""
    path = study_file(tmp_path, "locked")
    study = load_study(path)
    database = tmp_path / "mlflow.db"
    (spec,) = expand(study)
    uri = f"sqlite:///{database}"
    run_trial(spec, study, work_dir=tmp_path / "work", tracking_uri=uri, cache_root=tmp_path / "cache")
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        connection = sqlite3.connect(database)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(25)
        connection.rollback()
        connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert locked.wait(10)
    started = time.monotonic()
    try:
        result = driver(path, tmp_path)
    finally:
        release.set()
        holder.join()
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - started > 20  # it did wait for the holder
    assert "1 trials; 1 already finished in MLflow, 0 to run" in result.stdout
    assert "database is locked" in result.stderr and "retry 1/" in result.stderr and "Traceback" not in result.stderr
