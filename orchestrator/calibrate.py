"""``--dry-run --calibrate``: time a trial's parts on the study's own cluster, then forecast the study.

    python -m orchestrator.run --config conf/miccai2023_cpu.yaml --dry-run --calibrate
    python -m orchestrator.run --config conf/miccai2023.yaml --dry-run --calibrate --address HEAD:6379 \\
        --cluster "4 x (8 GPUs, 32 CPUs)"

The study's data are prepared into its cache (as a run does first; the run then reuses
them), for the image counts and sizes of each kind of trial. Trials that cost the same
(variant, data set, model shape, image size, batch size, precision, layout, evaluation)
form one group. On the connected cluster (``--address``, else a local one), as many Ray
workers as trials would run at once (at most :data:`MAX_WORKERS`) start with each trial's
resources; together, so that they share the devices as trials will, they time each group's
set-up, a few training steps, a checkpoint, a validation pass and part of the test
(``trainables.calibration``); the median of the workers counts. A worker's start (process
and imports) is timed too. ``orchestrator.forecast`` then packs the study onto the cluster,
or onto the one ``--cluster`` describes, and the forecast is saved as
``<storage>/<study>/forecast.json``: a later run records it in its MLflow experiment and the
report sets it against what the run took.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from orchestrator.forecast import Forecast, Node, TrialCost, describe_cluster, forecast, parse_cluster, slots
from trainables.config import StudyConfig
from trainables.files import replacing
from trainables.spec import TrialSpec

MAX_WORKERS = 8  # calibration workers at once: enough to load a GPU shared 8 ways
FORECAST_FILE = "forecast.json"


@dataclass(frozen=True)
class Group:
    """Trials that cost the same: one representative, measured once."""

    spec: TrialSpec
    view: StudyConfig  # the study as this trial sees it

    @property
    def label(self) -> str:
        return f"{self.spec.variant} on {self.spec.dataset} at {self.view.image_size} px"


def cost_key(spec: TrialSpec, view: StudyConfig) -> str:
    """What a trial's cost depends on besides its epochs: trials with equal keys are measured once."""
    training = view.training
    return json.dumps(
        [
            spec.variant,
            spec.dataset,
            view.image_size,
            view.model.model_dump(mode="json"),
            view.evaluation.model_dump(mode="json"),
            [training.batch_size, training.mixed_precision, training.channels_last, training.compile],
            [training.eval_batch_size, training.cudnn_benchmark],
        ],
        sort_keys=True,
    )


def trial_groups(study: StudyConfig, specs: list[TrialSpec]) -> tuple[dict[str, Group], list[tuple[str, int, int]]]:
    """The groups of ``specs`` by :func:`cost_key`, in order of first appearance, and each spec's key, epochs and
    validation cadence (from the one view of the study each spec is given)."""
    groups: dict[str, Group] = {}
    per_spec = []
    for spec in specs:
        view = study.for_trial(spec.dataset, spec.field_values)
        key = cost_key(spec, view)
        groups.setdefault(key, Group(spec, view))
        per_spec.append((key, view.training.epochs, view.training.val_every))
    return groups, per_spec


def forecast_path(storage: str, study: str) -> Path | None:
    """Where a study's forecast is kept: beside its trials' state; None for storage that is not a folder."""
    return None if "://" in storage else Path(storage) / study / FORECAST_FILE


def saved_forecast(storage: str, study: str) -> dict | None:
    """The study's saved forecast, or None (none saved, or a file that is not one)."""
    path = forecast_path(storage, study)
    if path is None or not path.is_file():
        return None
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and found.get("study") == study else None


def _calibrator_class(ray):
    @ray.remote
    class Calibrator:
        """A Ray worker with a trial's resources that times trial parts (torch imported once, at its start)."""

        def __init__(self) -> None:
            import trainables.calibration  # noqa: F401  (the worker's imports count in its start-up)

        def ready(self) -> bool:
            return True

        def measure(self, variant: str, view: StudyConfig, sizes, device: str | None, threads: int) -> dict:
            from trainables.calibration import measure_parts

            return measure_parts(variant, view, sizes, device, threads)

    return Calibrator


def measure_groups(
    ray, groups: dict[str, Group], sizes: dict, cpu: float, gpu: float, workers: int
) -> tuple[dict[str, TrialCost], str]:
    """Each group's :class:`TrialCost`, measured by ``workers`` Ray workers at once (the median of theirs), and the
    device they trained on (``cpu`` or ``cuda``)."""
    calibrator = _calibrator_class(ray).options(num_cpus=cpu, num_gpus=gpu)
    started = time.monotonic()
    actors = [calibrator.remote() for _ in range(workers)]
    pending = {actor.ready.remote(): actor for actor in actors}
    startups = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        ray.get(done[0])
        startups.append(time.monotonic() - started)
        pending.pop(done[0])
    startup = statistics.median(startups)
    print(f"  {workers} worker(s) started in {startup:.1f} s (median)", flush=True)
    device = "cpu" if gpu == 0 else None  # as the sweep: a trial given no GPU never takes one
    threads = max(1, round(cpu))
    costs, devices = {}, set()

    def measure(key: str) -> TrialCost:
        group = groups[key]
        measured = ray.get(
            [actor.measure.remote(group.spec.variant, group.view, sizes[key], device, threads) for actor in actors]
        )
        devices.update(entry["device"] for entry in measured)
        numbers = [name for name, value in measured[0].items() if isinstance(value, float)]
        parts = {name: statistics.median(entry[name] for entry in measured) for name in numbers}
        print(
            f"  {group.label} in {measured[0]['precision']}: {parts['epoch']:.2f} s an epoch "
            f"({parts['steps_per_epoch']:.0f} steps), {parts['validation']:.2f} s a validation, "
            f"{parts['test']:.2f} s the test",
            flush=True,
        )
        return TrialCost(parts["epoch"], parts["validation"], parts["test"], parts["setup"], startup)

    try:
        for key in groups:
            costs[key] = measure(key)
        # The first group ran while Ray's own processes were still starting: measured again, the lower kept. On 2
        # cores a UDTransNet epoch read 8.1 s first and 6.2 s again; two of its trials then took 266 s against 256 s
        # forecast from the second measurement (336 s from the first).
        first = next(iter(groups))
        print("  (the first again, now that Ray has settled)", flush=True)
        costs[first] = min(costs[first], measure(first), key=lambda cost: cost.trial_seconds(1, 1))
    finally:
        for actor in actors:
            ray.kill(actor)
    return costs, "/".join(sorted(devices))


def finished_before(uri: str, study: StudyConfig) -> set[str]:
    """Trial ids already FINISHED in the study's store: a run skips them, so the forecast leaves them out. Empty
    where a SQLite store does not exist yet (a dry run never creates one)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return set()
    from trainables.tracking import RetryPolicy, finished_trial_ids, only_our_retries

    only_our_retries()  # before the first MLflow call, as a run
    return finished_trial_ids(uri, study.experiment_name, RetryPolicy.from_config(study.tracking))


def calibrate(
    args: argparse.Namespace, study: StudyConfig, specs: list[TrialSpec], uri: str
) -> tuple[Forecast | None, Path | None]:
    """Measure on the connected cluster, forecast the study's trials not yet finished in MLflow (on ``--cluster``
    when given), save the forecast.

    Returns:
        The forecast (None when every trial has finished: nothing is measured), and the file it was saved to (None
        where the storage is not a folder).
    """
    from orchestrator.cluster import check_local_fit, check_ray_address
    from orchestrator.driver import _absolute, _connect, prepare_data, trial_gpu
    from trainables.calibration import DataSizes
    from trainables.datasets.registry import trial_data

    nodes_asked = parse_cluster(args.cluster) if args.cluster else None  # a bad --cluster: refused before any work
    storage, cache = _absolute(args.storage or study.storage.results), _absolute(args.cache or study.storage.cache)
    check_ray_address(args.address)
    check_local_fit(study.resources.cpu, args.address, args.config)
    finished = finished_before(uri, study)
    todo = [spec for spec in specs if spec.trial_id not in finished]
    if finished:
        print(f"[{study.study}] {len(specs) - len(todo)} of {len(specs)} trials already finished in MLflow")
    if not todo:
        return None, None
    done, specs = len(specs) - len(todo), todo
    prepare_data(study, args.config, cache)
    groups, per_spec = trial_groups(study, specs)
    sizes = {
        key: DataSizes.of(trial_data(group.view, group.spec.dataset, group.spec.train_alpha, cache))
        for key, group in groups.items()
    }
    ray = _connect(args)
    try:
        gpu = trial_gpu(ray, study, args.config)
        here = [
            Node(node["Resources"].get("CPU", 0.0), node["Resources"].get("GPU", 0.0))
            for node in ray.nodes()
            if node.get("Alive")
        ]
        cap = study.resources.max_concurrent_trials
        workers = max(1, min(slots(here, study.resources.cpu, gpu, cap), len(specs), MAX_WORKERS))
        share = f"{study.resources.cpu:g} CPU and {gpu:g} GPU each"
        print(f"[{study.study}] calibrating {len(groups)} kind(s) of trial on {describe_cluster(here)} ({share})")
        costs, device = measure_groups(ray, groups, sizes, study.resources.cpu, gpu, workers)
        measured_on = f"{describe_cluster(here)}, training on {device}"
    finally:
        ray.shutdown()
    nodes = nodes_asked or here
    share = gpu if nodes_asked is None else study.resources.gpu if any(node.gpu for node in nodes) else 0.0
    trials = [
        (spec.variant, costs[key], epochs, val_every)
        for spec, (key, epochs, val_every) in zip(specs, per_spec, strict=True)
    ]
    result = forecast(
        study.study,
        study.config_hash(),
        trials,
        nodes,
        study.resources.cpu,
        share,
        cap=study.resources.max_concurrent_trials,
        measured_at=workers,
        measured_on=measured_on,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    result.finished_before = done
    path = forecast_path(storage, study.study)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as temporary:
            temporary.write_text(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    return result, path
