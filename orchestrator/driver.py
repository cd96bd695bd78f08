"""What a real run does once the study file is valid: checks, data, the store, the sweep on Ray, the summary.

``orchestrator.run`` (the command: arguments, validation, the dry run, stop signals) imports
this module only for a real run, before it arms its stop handlers (a stop cannot leave MLflow
half-imported): it loads MLflow, which takes a second, and ``--help`` and ``--dry-run`` are spared it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from orchestrator import interrupts
from orchestrator.calibrate import saved_forecast
from orchestrator.cluster import check_local_fit, check_ray_address, check_trial_fits, connect_ray
from orchestrator.ownership import claim_study
from orchestrator.preflight import preflight
from trainables.config import StudyConfigError
from trainables.datasets.registry import prepare_dataset
from trainables.files import NO_SPACE, disk_full
from trainables.schema import FORECAST_TAG, NOTE_TAG
from trainables.tracking import (
    DEFAULT_RETRY_POLICY,
    RetryPolicy,
    finished_trial_ids,
    mark_interrupted,
    only_our_retries,
    trial_summaries,
)
from trainables.tracking.view import TUNING_VIEW_TAG, VIEW_TAG, study_view, tuning_view, ui_lines, view_address

DISK_FULL = 74  # sysexits' EX_IOERR: free space, then run the same command


def pending_trials(specs: list, tracking_uri: str, experiment: str, policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> list:
    """The trials whose run is not FINISHED in MLflow, in order: what a (re)run schedules."""
    finished = finished_trial_ids(tracking_uri, experiment, policy)
    return [spec for spec in specs if spec.trial_id not in finished]


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _gpu_fraction(requested: float, cluster: dict, required: bool = False, source: str = "") -> float:
    """The GPU fraction to ask for: 0, with one warning, when the cluster has no GPU (else trials pend forever);
    a ``StudyConfigError`` instead when the study sets ``resources.require_gpu``."""
    if required and cluster.get("GPU", 0) == 0:
        raise StudyConfigError(
            f"{source}: resources.require_gpu: the Ray cluster has no GPU; connect to one that has (--address), "
            "or drop require_gpu to run on CPUs"
        )
    if requested > 0 and cluster.get("GPU", 0) == 0:
        warnings.warn(
            f"the study asks {requested:g} GPU per trial but the Ray cluster has no GPU: running on CPU instead",
            stacklevel=2,
        )
        return 0.0
    return requested


def prepare_data(study, source: str, cache: str) -> None:
    """Prepare every data set of the study into this node's cache before any trial starts.

    A corrupt file or a mask that does not match its image is then one clear error
    (exit 2) instead of every trial failing on it; on one machine the trials reuse the
    cache. A cache folder this call created is removed again when preparation fails.
    """
    existed = Path(cache).exists()
    try:
        for name in study.datasets.names:
            print(f"[{study.study}] preparing data set {name} in {cache}", flush=True)
            prepare_dataset(study, name, cache)
    except (ValueError, OSError) as error:  # a MedicalDataError is a ValueError
        if not existed:
            shutil.rmtree(cache, ignore_errors=True)
        where = f"datasets.{name}"
        raise StudyConfigError(f"{source}: {where}: {str(error).strip().splitlines()[0]}") from None


def report_commands(uri: str, experiment: str) -> list[str]:
    """The two commands that turn the study's runs into its report, attached to the study's report run in MLflow."""
    out = shlex.quote(f"results/{experiment}")
    export = shlex.join(["--study", experiment, "--tracking-uri", uri])
    attach = shlex.join(["--log-to-mlflow", "--tracking-uri", uri])
    return [f"python -m analysis export {export} --out {out}", f"python -m analysis report {out} {attach}"]


def experiment_note(study, config: str, uri: str) -> str:
    """The experiment's description in the MLflow UI: what the study is, from which file, how to report it."""
    digest = hashlib.sha256(Path(config).read_bytes()).hexdigest()[:12]
    commands = "\n".join(report_commands(uri, study.experiment_name))
    return (
        f"**{study.description or study.study}**\n\n"
        f"skipsweep study `{study.study}` from `{config}` (file sha256 {digest}, config hash {study.config_hash()}). "
        "One run per trial (variant, dataset, train_alpha, seed): each is a param, so the chart view can plot "
        "`dice_in_domain` against `train_alpha`; each variant's runs are drawn in one colour.\n\n"
        f"Report (tables, figures, the papers' claims checked):\n\n```\n{commands}\n```\n"
    )


def experiment_tags(study, config: str, uri: str) -> dict[str, str]:
    """The experiment tags MLflow's UI reads: the description, and the study's view (its charts and columns)."""
    synthetic = any(name not in study.datasets.medical for name in study.datasets.names)
    view = study_view(list(study.test_levels), synthetic, study.datasets.names, sorted(study.sweep))
    tags = {NOTE_TAG: experiment_note(study, config, uri), VIEW_TAG: view}
    if study.tune is not None:
        tags[TUNING_VIEW_TAG] = tuning_view(list(study.tune.space), study.datasets.names)
    return tags


def runs_page(experiment_id: str) -> str:
    """The part of the UI's address after the server that opens a study's view (its charts) as model training."""
    return view_address(experiment_id)


def _print_summary(uri: str, experiment: str, policy: RetryPolicy) -> list[dict]:
    """Print one line per trial run, the MLflow UI command and the next commands; return the rows."""
    rows = trial_summaries(uri, experiment, policy)
    width = max([36, *(len(row["run_name"]) + 1 for row in rows)])  # a swept study's names are longer
    print(f"\n{'run':<{width}} {'status':<9} {'best val Dice':>13} {'test Dice (in domain)':>22}")
    for row in rows:
        best = "-" if row["best_val_dice"] is None else f"{row['best_val_dice']:.4f}"
        test = "-" if row["test_dice_in_domain"] is None else f"{row['test_dice_in_domain']:.4f}"
        print(f"{row['run_name']:<{width}} {row['status']:<9} {best:>13} {test:>22}")
    print("\n" + "\n".join(ui_lines(uri, rows[0]["experiment_id"] if rows else None)))
    export, report = report_commands(uri, experiment)
    print(f"next:        {export}")
    print(f"             {report}")
    return rows


@dataclass(frozen=True)
class Prepared:
    """What a real run (the grid, or the tuning stage) has once its checks passed and its data are ready."""

    storage: str  # absolute
    cache: str  # absolute
    policy: RetryPolicy  # the driver's tracking calls; each trial takes the same from the study
    ui_tags: dict[str, str]  # the experiment's note and views


def prepare_run(args: argparse.Namespace, study, uri: str) -> Prepared:
    """The checks before any work (address, local fit, preflight) and the study's data, prepared once."""
    storage, cache = _absolute(args.storage or study.storage.results), _absolute(args.cache or study.storage.cache)
    check_ray_address(args.address)
    check_local_fit(study.resources.cpu, args.address, args.config)
    policy = RetryPolicy.from_config(study.tracking)
    only_our_retries()  # before the first MLflow call (each trial sets it too)
    preflight(study, args.config, uri, storage, cache, address=args.address)
    prepare_data(study, args.config, cache)  # a corrupt data file is refused before the store is touched
    tags = experiment_tags(study, args.config, uri)
    forecast = saved_forecast(storage, study.study)  # ``--dry-run --calibrate``'s: the report compares
    if forecast is not None:
        tags[FORECAST_TAG] = json.dumps(forecast, sort_keys=True)
    return Prepared(storage, cache, policy, tags)


def trial_gpu(ray, study, source: str) -> float:
    """The GPU share each trial asks the connected cluster for (:func:`_gpu_fraction`), once the trial is known to fit
    a node (:func:`check_trial_fits`)."""
    resources = study.resources
    gpu = _gpu_fraction(resources.gpu, ray.cluster_resources(), resources.require_gpu, source)
    check_trial_fits(resources.cpu, ray.nodes(), source, gpu)
    return gpu


def run_study(args: argparse.Namespace, study, specs: list, uri: str, after_epoch=None) -> int:
    """Everything after validation: checks, data, MLflow, the sweep on Ray, the summary; returns the exit status."""
    run = prepare_run(args, study, uri)
    with claim_study(
        study.study, run.storage, uri, study.experiment_name, retry_policy=run.policy, ui_tags=run.ui_tags
    ):
        return _sweep(args, study, specs, uri, run.cache, run.storage, run.policy, after_epoch)


def _sweep(args: argparse.Namespace, study, specs: list, uri: str, cache: str, storage: str, policy, after_epoch):
    """The study's trials that are not finished, on Ray; the summary; returns the exit status (an int)."""
    from orchestrator.sweep import SweepPaths, run_sweep  # Ray is imported only once the study is valid

    paths = SweepPaths(uri, cache, storage)
    todo = pending_trials(specs, uri, study.experiment_name, policy)
    print(
        f"[{study.study}] {len(specs)} trials; {len(specs) - len(todo)} already finished in MLflow, {len(todo)} to run"
    )
    outcome: dict[str, str] = {}
    stopped_by = None  # a full disk that ended the sweep itself
    if todo:
        ray = _connect(args)
        try:
            gpu = trial_gpu(ray, study, args.config)
            started = time.monotonic()
            outcome = run_sweep(study, todo, paths, gpu, args.checkpoint_every, args.verbose, after_epoch)
            print(f"[{study.study}] sweep took {time.monotonic() - started:.1f} s")
        except Exception as error:  # Tune reads back what it wrote (error files, experiment state)
            stopped_by = disk_full(error, _written_folders(uri, cache, storage))
            if stopped_by is None:
                raise
        finally:
            ray.shutdown()
    rows = []
    try:
        rows = _print_summary(uri, study.experiment_name, policy)
    except Exception as error:  # the store went away at the end: the outcome below still counts
        print(f"[{study.study}] could not read the summary from {uri}: {error}", file=sys.stderr)
    names = {spec.trial_id: spec.run_name for spec in todo}
    ours = set(names.values())  # runs of trials this study no longer has keep their old errors out of this
    errors = {row["run_name"]: row["error"] for row in rows if row["run_name"] in ours and row["status"] != "FINISHED"}
    errors = {name: error for name, error in errors.items() if error}
    failed = [names[trial] for trial, state in outcome.items() if state != "TERMINATED"]
    stopped_by = stopped_by or next((error for error in errors.values() if error.startswith(NO_SPACE)), None)
    if failed:
        reasons = ", ".join(f"{name} ({errors[name]})" if name in errors else name for name in failed)
        print(f"[{study.study}] {len(failed)} trial(s) failed after retries: {reasons}", file=sys.stderr)
    if stopped_by:
        print(f"[{study.study}] stopped: {stopped_by}; free space, then run the same command", file=sys.stderr)
        return DISK_FULL
    return 1 if failed else 0


def _written_folders(uri: str, cache: str, storage: str) -> list[str]:
    """The local folders a study writes to: where a full disk would stop it."""
    folders = [folder for folder in (cache, storage) if "://" not in folder]
    if uri.startswith("sqlite:///"):
        folders.append(str(Path(uri.removeprefix("sqlite:///")).parent))
    return folders


def _connect(args: argparse.Namespace):
    """``connect_ray`` with this driver's SIGINT/SIGTERM handling in place again; returns the ``ray`` module.

    ``ray.init`` installs a SIGTERM handler of its own (``sys.exit(15)``) for as long as it takes to
    start a local cluster (seconds): a SIGTERM then becomes an ``Interrupted`` like any other, and
    whatever part of the cluster had started is shut down.
    """
    try:
        with interrupts.held():  # delivered, to our handler, the moment ray.init returns
            ray = connect_ray(args.address, args.verbose)
            interrupts.arm()
        return ray
    except SystemExit as exit_request:
        if exit_request.code != signal.SIGTERM:
            raise
        _shutdown_ray()
        raise interrupts.interrupted_by(signal.SIGTERM) from None
    except BaseException:  # Ctrl-C (our handler) or a failure half-way through starting
        _shutdown_ray()
        raise


def _shutdown_ray() -> None:
    import ray

    ray.shutdown()


def mark_stopped(stop: interrupts.Interrupted, study, uri: str, started_ms: int) -> list[str]:
    """After SIGINT/SIGTERM (Ray already shut down): mark the study's unfinished runs KILLED; their names.

    A SQLite store that does not exist is not created just to record that nothing ran.
    """
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    try:
        policy = RetryPolicy.from_config(study.tracking)
        return mark_interrupted(uri, study.experiment_name, f"driver stopped by {stop.name}", started_ms, policy)
    except Exception as error:  # the resume line matters more
        print(f"[{study.study}] could not mark the interrupted runs in {uri}: {error}", file=sys.stderr)
        return []
