"""The driver's closing lines: commands a user can paste, whatever the paths and study names hold."""

from __future__ import annotations

import shlex
from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.driver import _print_summary
from trainables.tracking import RetryPolicy


def test_the_printed_next_commands_survive_spaces_and_quotes(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "my results, 'v2'"
    folder.mkdir()
    uri = f"sqlite:///{folder}/mlflow.db"
    MlflowClient(uri).create_experiment("study one")
    _print_summary(uri, "study one", RetryPolicy(attempts=1))
    lines = capsys.readouterr().out.splitlines()
    ui = next(line for line in lines if line.startswith("MLflow UI:"))
    export = next(line for line in lines if line.startswith("next:"))
    report = lines[lines.index(export) + 1]
    assert shlex.split(ui.removeprefix("MLflow UI:")) == ["mlflow", "ui", "--backend-store-uri", uri]
    assert shlex.split(export.removeprefix("next:")) == [
        "python", "-m", "analysis", "export", "--study", "study one", "--tracking-uri", uri,
        "--out", "results/study one",
    ]  # fmt: skip
    assert shlex.split(report) == [
        "python", "-m", "analysis", "report", "results/study one", "--log-to-mlflow", "--tracking-uri", uri,
    ]  # fmt: skip
