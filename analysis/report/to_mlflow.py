"""Attach a built report (report.md, figures, tables, the export's pictures) to one study-level MLflow run.

    python -m analysis report results/miccai2023 --log-to-mlflow --tracking-uri sqlite:///mlflow.db

The run lives in the study's experiment, is tagged ``skipsweep.kind=report`` (so exports never
take it for a trial) and is reused by every later report of the same study.
"""

from __future__ import annotations

from pathlib import Path

from analysis.export import open_study_experiment
from analysis.frames import PREDICTIONS_FOLDER
from analysis.report import REPORT_FILE
from trainables.schema import KIND_TAG, REPORT_KIND, STUDY_TAG, kind_filter, search_all_runs

REPORT_RUN_NAME = "report"


def log_report(report_dir: str | Path, study: str, tracking_uri: str | None = None, baseline: str = "") -> str:
    """Log ``report.md``, ``figures/``, ``tables/`` and ``predictions/`` to the study's report run, creating it once.

    Args:
        report_dir: Folder written by :func:`analysis.report.build_report`.
        study: Study name (its MLflow experiment).
        tracking_uri: MLflow tracking URI (see :func:`analysis.export.resolve_tracking_uri`).
        baseline: Baseline variant of the report, recorded as a tag.

    Returns:
        The report run's id.

    Raises:
        FileNotFoundError: The folder holds no ``report.md``.
        StudyNotFoundError: No experiment for the study.
    """
    folder = Path(report_dir)
    if not (folder / REPORT_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {REPORT_FILE}; run `python -m analysis report {folder}` first")
    client, experiment_id = open_study_experiment(study, tracking_uri)
    existing = search_all_runs(client, experiment_id, kind_filter(REPORT_KIND), order_by=["attributes.start_time ASC"])
    tags = {KIND_TAG: REPORT_KIND, STUDY_TAG: study, "study": study, "baseline": baseline}
    if existing:
        run_id = existing[0].info.run_id
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    else:
        run_id = client.create_run(experiment_id, tags=tags, run_name=REPORT_RUN_NAME).info.run_id
    try:
        client.log_artifact(run_id, str(folder / REPORT_FILE))
        for sub in ("figures", "tables", PREDICTIONS_FOLDER):  # everything report.md links to
            if (folder / sub).is_dir():
                client.log_artifacts(run_id, str(folder / sub), artifact_path=sub)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id
