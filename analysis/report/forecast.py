"""The report's "Forecast vs actual": what ``--dry-run --calibrate`` said the study would take, and what it took.

The forecast travels from the study's storage (``forecast.json``) through the MLflow experiment
(tag ``skipsweep.forecast``, set by each run of the study) into ``export.json``. The actual
figures come from the exported runs: a trial's time is its run's (start to end: the worker's
own start is not in it, nor in the forecast's seconds per trial), the study's is the span from
the first run's start to the last run's end (a study stopped and resumed counts its pause),
device-hours are each run's time times the GPU share (or CPUs) it recorded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.frames import ordered_variants
from analysis.report.formatting import markdown_table
from trainables.schema import duration_text


def _run_seconds(runs: pd.DataFrame) -> pd.Series:
    """Each run's time, start to end, in seconds."""
    return (runs["end_time"] - runs["start_time"]).dt.total_seconds()


def _ratio(actual: float, forecast: float) -> float:
    return actual / forecast if forecast > 0 else float("nan")


def forecast_table(runs: pd.DataFrame, forecast: dict) -> pd.DataFrame:
    """One row per variant and one ``all`` row: trials and seconds forecast and actual, and their ratio."""
    timed = runs.assign(seconds=_run_seconds(runs))
    predicted = forecast.get("per_variant", {})
    rows = []
    for variant in ordered_variants(sorted(set(predicted) | set(timed["variant"]))):
        entry = predicted.get(variant, {})
        mine = timed[timed["variant"] == variant]["seconds"]
        expected = float(entry.get("seconds_per_trial", np.nan))
        actual = float(mine.mean()) if len(mine) else np.nan
        rows.append(
            {
                "variant": variant,
                "trials_forecast": int(entry.get("trials", 0)),
                "trials_run": len(mine),
                "forecast_seconds": expected,
                "actual_seconds": actual,
                "actual_min": float(mine.min()) if len(mine) else np.nan,
                "actual_max": float(mine.max()) if len(mine) else np.nan,
                "ratio": _ratio(actual, expected),
            }
        )
    span = (runs["end_time"].max() - runs["start_time"].min()).total_seconds() if len(runs) else np.nan
    expected = float(forecast.get("trials_seconds", forecast.get("wall_seconds", np.nan)))
    rows.append(
        {
            "variant": "all (wall time)",
            "trials_forecast": sum(int(entry.get("trials", 0)) for entry in predicted.values()),
            "trials_run": len(runs),
            "forecast_seconds": expected,
            "actual_seconds": span,
            "actual_min": np.nan,
            "actual_max": np.nan,
            "ratio": _ratio(span, expected),
        }
    )
    return pd.DataFrame(rows)


def _device_hours(runs: pd.DataFrame, forecast: dict) -> str:
    """Forecast and actual GPU-hours (a study that asked a GPU share) or CPU-hours, as one sentence."""
    seconds = _run_seconds(runs)
    gpu = float(forecast.get("gpu", 0.0))
    kind, column, expected = ("GPU", "param.resources.gpu", "gpu_hours") if gpu else ("CPU", "param.resources.cpu", "")
    if column not in runs:
        return ""
    actual = float((seconds * pd.to_numeric(runs[column], errors="coerce")).sum() / 3600)
    predicted = float(forecast.get(expected or "cpu_hours", np.nan))
    return (
        f"{kind}-hours (each run's time x the {kind} share it recorded): forecast {predicted:.3f}, actual "
        f"{actual:.3f} (x{_ratio(actual, predicted):.2f})."
    )


def covered_runs(runs: pd.DataFrame, forecast: dict) -> pd.DataFrame:
    """The runs the forecast was made for: those that ended after it (a trial already finished then was left out of
    it, and a run skips it); all of them when the forecast is undated."""
    created = pd.to_datetime(forecast.get("created") or None, utc=True, errors="coerce")
    if pd.isna(created) or "end_time" not in runs:
        return runs
    return runs[pd.to_datetime(runs["end_time"], utc=True) > created]


def forecast_section(writer, runs: pd.DataFrame, forecast: dict | None) -> str:
    """The section and ``tables/forecast_vs_actual.csv``; "" when the study was not calibrated before it ran."""
    if not forecast or runs.empty:
        return ""
    earlier = len(runs)
    runs = covered_runs(runs, forecast)
    earlier -= len(runs)
    if runs.empty:
        return ""
    table = forecast_table(runs, forecast)
    link = writer.csv("forecast_vs_actual.csv", table)
    rows = []
    for record in table.to_dict("records"):
        spread = (
            ""
            if np.isnan(record["actual_min"])
            else f" ({record['actual_min']:.1f} to {record['actual_max']:.1f})"
            if record["trials_run"] > 1
            else ""
        )
        actual = "-" if np.isnan(record["actual_seconds"]) else f"{record['actual_seconds']:.1f}{spread}"
        ratio = "-" if np.isnan(record["ratio"]) else f"x{record['ratio']:.2f}"
        forecast_cell = "-" if np.isnan(record["forecast_seconds"]) else f"{record['forecast_seconds']:.1f}"
        rows.append(
            [record["variant"], f"{record['trials_forecast']}", f"{record['trials_run']}", forecast_cell, actual, ratio]
        )
    header = [
        "variant",
        "trials forecast",
        "trials run",
        "forecast s per trial",
        "actual s per trial",
        "actual / forecast",
    ]
    lines = [
        "## Forecast vs actual\n",
        f"Forecast by `python -m orchestrator.run --dry-run --calibrate` ({forecast.get('created', 'undated')}) "
        f"for {forecast.get('cluster', 'the cluster')}: {forecast.get('parallel', '?')} trial(s) at once, "
        f"{forecast.get('binding', '?')} binding; it assumed: {forecast.get('assumptions', '')}.\n",
        markdown_table(header, rows, align="lrrrrr"),
        "",
        f"([CSV]({link})) A trial's actual time is its run's, start to end; the wall time is from the first run's "
        "start to the last run's end (a study stopped and resumed counts its pause); neither counts the driver's "
        "start or the workers'. Forecast wall time including the workers' start: "
        f"{duration_text(float(forecast.get('wall_seconds', np.nan)))}.",
    ]
    if earlier:
        lines.append(
            f"The {earlier} run(s) that had finished before the forecast are not compared (the forecast left "
            f"{forecast.get('finished_before', 'them')} finished trial(s) out)."
        )
    hours = _device_hours(runs, forecast)
    if hours:
        lines.append(hours)
    hashes = set(runs["config_hash"]) if "config_hash" in runs else set()
    if forecast.get("config_hash") and hashes and hashes != {forecast["config_hash"]}:
        lines.append(
            f"The forecast was made for config hash {forecast['config_hash']}, the runs have "
            f"{', '.join(sorted(hashes))}: the study changed between the forecast and the run."
        )
    return "\n".join(lines) + "\n"
