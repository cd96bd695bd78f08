"""The study's own view in MLflow's UI: the charts a researcher compares variants with, open at once.

MLflow's runs page reads a saved view from an experiment tag ``mlflow.sharedViewState.<key>``
when its address carries ``viewStateShareKey=<key>`` (the "shared view" of MLflow 3.17's UI,
which reads a plain JSON value). The driver stores one per study and prints the address, so the
first page a researcher sees is the comparison, not the GenAI page or MLflow's alphabetical wall
of single-value bar charts (``best_epoch`` ... ``test_ts.*`` before ``val_dice``):

1. "Dice against train_alpha": each run a point in its variant's colour (``mlflow.runColor``),
   in-domain Dice, the mean out-of-domain Dice and each test level's Dice (for a study of
   medical data sets only, against the variant);
   With sweep axes, a section "Dice against <axis>" per axis follows.
2. "Training curves": ``val_dice``, ``train_loss`` and ``epoch_seconds`` per epoch;
3. "Trial resources": the trial process's CPU and memory, and the GPU's use where there is one
   (an empty chart is hidden).

The table lists the grid factors and the summary metrics as columns, and the view shows trials
only (the report run is one filter away: clear the search box). "Exit shared view" in the UI gives
MLflow's default page back. Standard library only: the value is built by the driver, set by
``ensure_experiment``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

from trainables.schema import (
    BEST_VAL_DICE,
    DICE_IN_DOMAIN,
    DICE_OUT_OF_DOMAIN,
    EPOCH_SECONDS,
    EPOCHS_TRAINED,
    IN_DOMAIN,
    MEAN_EPOCH_SECONDS,
    TRAIN_LOSS,
    TRIAL_KIND,
    TUNE_OUTCOME_TAG,
    TUNING_TRIAL_KIND,
    VAL_DICE,
    condition_metric,
    kind_filter,
)

VIEW_KEY = "skipsweep"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"  # on the experiment
TUNING_VIEW_KEY = "skipsweep-tuning"
TUNING_VIEW_TAG = f"mlflow.sharedViewState.{TUNING_VIEW_KEY}"  # on the experiment of a study with a tune: section
RESOURCE_METRICS = (
    "system/process_cpu_percent",
    "system/process_rss_megabytes",
    "system/gpu_0_utilization_percentage",
    "system/gpu_0_memory_usage_megabytes",
)
ALL_RUNS = 1000  # charts draw this many runs (MLflow's default is the first 10)


def view_address(experiment_id: str, key: str = VIEW_KEY) -> str:
    """The part of the UI's address after the server that opens the study's view (or another saved view of
    ``key``: the tuning's), as model training.

    No other search setting may be in the address: MLflow then ignores the saved view.
    """
    query = f"viewStateShareKey={key}&workflowType=machine_learning&compareRunsMode=CHART"
    return f"#/experiments/{experiment_id}/runs?{query}"


def ui_lines(uri: str, experiment_id: str | None, key: str = VIEW_KEY) -> list[str]:
    """How to open the view of ``key`` for a store: the ``mlflow ui`` command (a local store) or the server's
    address, then the page to open (none without an experiment)."""
    local = uri.startswith("sqlite")
    lines = [f"MLflow UI:   mlflow ui --backend-store-uri {shlex.quote(uri)}" if local else f"MLflow:      {uri}"]
    if experiment_id is not None:  # MLflow 3.17's UI opens in its GenAI mode unless the link asks for model training
        server = "http://127.0.0.1:5000" if local else uri.rstrip("/")
        lines.append(f"             then open {server}/{view_address(experiment_id, key)}")
    return lines


def study_view(test_levels: Sequence[str], synthetic: bool, datasets: Sequence[str], axes: Sequence[str] = ()) -> str:
    """The view's JSON for a study with these test levels, data sets and (``synthetic``) train_alpha axis.

    Args:
        test_levels: the study's test levels (``in_domain``, ``easier``, ``harder``, ``hardest``).
        synthetic: whether any data set is synthetic (then Dice is drawn against train_alpha, else the variant).
        datasets: the study's data sets (a ``dataset`` column when there are several).
        axes: the study's sweep axes (params by their dotted keys): a section of Dice against each, and a column.
    """
    axis = "train_alpha" if synthetic else "variant"
    dice = [DICE_IN_DOMAIN, DICE_OUT_OF_DOMAIN]
    dice += [condition_metric("dice", level) for level in test_levels if level != IN_DOMAIN]
    sections = {"compare": f"Dice against {axis}", "curves": "Training curves", "resources": "Trial resources"}
    charts = [_scatter(f"dice-{n}", "compare", axis, metric) for n, metric in enumerate(dice)]
    for n, key in enumerate(axes):
        sections[f"sweep-{n}"] = f"Dice against {key}"
        charts += [_scatter(f"sweep-{n}-{m}", f"sweep-{n}", key, metric) for m, metric in enumerate(dice[:2])]
    charts += [_line(f"curve-{n}", "curves", metric, "step") for n, metric in enumerate(_CURVES)]
    charts += [_line(f"resource-{n}", "resources", metric, "time") for n, metric in enumerate(RESOURCE_METRICS)]
    params = ["variant", *(["dataset"] if len(datasets) > 1 else []), *(["train_alpha"] if synthetic else []), "seed"]
    params += list(axes)
    metrics = [DICE_IN_DOMAIN, DICE_OUT_OF_DOMAIN, BEST_VAL_DICE, MEAN_EPOCH_SECONDS]
    state = {
        "searchFilter": kind_filter(TRIAL_KIND),
        "selectedColumns": [f"params.`{p}`" for p in params] + [f"metrics.`{m}`" for m in metrics],
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
        "compareRunSections": [_section(uuid, name) for uuid, name in sections.items()],
        "compareRunCharts": charts,
    }
    return json.dumps(state, separators=(",", ":"))


_CURVES = (VAL_DICE, TRAIN_LOSS, EPOCH_SECONDS)


def tuning_view(space: Sequence[str], datasets: Sequence[str]) -> str:
    """The view of a study's tuning stage: its configurations (``tuning_trial`` runs), each a point of its variant's
    colour, best validation Dice against each searched field, their validation curves (where ASHA stopped them
    shows), and a table of the fields, the Dice and the epochs each trained."""
    sections = {f"field-{n}": f"Best validation Dice against {key}" for n, key in enumerate(space)}
    sections["curves"] = "Validation Dice per epoch"
    charts = [_scatter(f"field-{n}-0", f"field-{n}", key, BEST_VAL_DICE) for n, key in enumerate(space)]
    charts.append(_line("curve-0", "curves", VAL_DICE, "step"))
    params = ["variant", *(["dataset"] if len(datasets) > 1 else []), *space]
    state = {
        "searchFilter": kind_filter(TUNING_TRIAL_KIND),
        # sorted by a metric, the UI lists the configurations flat instead of nested under their tunings (whose
        # rows carry none of the searched fields, so the charts would draw nothing)
        "orderByKey": f"metrics.`{BEST_VAL_DICE}`",
        "orderByAsc": False,
        "selectedColumns": [f"params.`{p}`" for p in params]
        + [f"metrics.`{m}`" for m in (BEST_VAL_DICE, EPOCHS_TRAINED)]
        + [f"tags.`{TUNE_OUTCOME_TAG}`"],
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
        "compareRunSections": [_section(uuid, name) for uuid, name in sections.items()],
        "compareRunCharts": charts,
    }
    return json.dumps(state, separators=(",", ":"))


def _section(uuid: str, name: str) -> dict:
    return {"uuid": uuid, "name": name, "display": True, "isReordered": True, "deleted": False, "isGenerated": False}


def _chart(uuid: str, section: str, kind: str) -> dict:
    return {
        "uuid": uuid,
        "type": kind,
        "runsCountToCompare": ALL_RUNS,
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
    }


def _scatter(uuid: str, section: str, param: str, metric: str) -> dict:
    axes = {"xaxis": {"key": param, "type": "PARAM"}, "yaxis": {"key": metric, "type": "METRIC"}}
    return _chart(uuid, section, "SCATTER") | axes


def _line(uuid: str, section: str, metric: str, x_axis: str) -> dict:
    return _chart(uuid, section, "LINE") | {
        "metricKey": metric,
        "xAxisKey": x_axis,
        "useGlobalXaxisKey": False,
        "scaleType": "linear",
        "xAxisScaleType": "linear",
        "lineSmoothness": 0,
        "range": {},
        "selectedXAxisMetricKey": "",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalLineSmoothing": True,
    }
