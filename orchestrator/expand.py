"""Study -> the explicit list of trials (pure, deterministic, no Ray)."""

from __future__ import annotations

from collections import Counter

from orchestrator.forecast import Forecast, Node, TrialCost, forecast
from trainables.config import SYNTHETIC_DATASETS, StudyConfig
from trainables.config.names import axis_text
from trainables.schema import format_alpha
from trainables.spec import TrialSpec

PLAUSIBLE_GPU_HOURS = 1e5  # the whole study (about 11 GPU-years): more means a wrong epochs or --epoch-seconds
PLAUSIBLE_TRIAL_HOURS = 365 * 24  # one trial, which no cluster splits: more than a year of wall time


def expand(study: StudyConfig) -> list[TrialSpec]:
    """Every (dataset, variant, train_alpha, seed, sweep values) of the study, in a canonical order.

    The order and the trial ids depend only on the set of values, not on how the
    study file lists them.
    """
    specs = []
    for dataset in sorted(study.datasets.names):
        alphas: tuple[float | None, ...] = (None,)
        if dataset in SYNTHETIC_DATASETS:
            alphas = getattr(study.datasets, dataset).alphas
        for variant in sorted(study.variants):
            for alpha in alphas:
                for seed in sorted(study.seeds):
                    for axes in study.axis_combinations():
                        tuned = tuple(study.tuned_values(variant, dataset).items())
                        specs.append(TrialSpec(study.study, dataset, variant, alpha, seed, axes, tuned))
    return specs


def trial_table(specs: list[TrialSpec], study: StudyConfig, seconds_per_epoch: dict[str, float] | None = None) -> str:
    """A plain-text summary of what a sweep would run: counts, resources and, if known, GPU-hours.

    Args:
        specs: the trials (after skipping finished ones, if the caller did).
        study: the study, for resources and epochs.
        seconds_per_epoch: measured seconds per epoch by variant, for the estimate.
    """
    lines = [f"study {study.study}: {len(specs)} trial(s)"]
    by_variant = Counter(spec.variant for spec in specs)
    by_dataset = Counter(spec.dataset for spec in specs)
    alphas = Counter(format_alpha(spec.train_alpha) for spec in specs if spec.train_alpha is not None)
    seeds = Counter(spec.seed for spec in specs)
    lines.append("  per variant: " + ", ".join(f"{name} {count}" for name, count in sorted(by_variant.items())))
    lines.append("  per dataset: " + ", ".join(f"{name} {count}" for name, count in sorted(by_dataset.items())))
    if alphas:
        lines.append("  per alpha:   " + ", ".join(f"{name} {count}" for name, count in sorted(alphas.items())))
    lines.append("  per seed:    " + ", ".join(f"{name} {count}" for name, count in sorted(seeds.items())))
    for key in sorted(study.sweep):
        values = Counter(axis_text(spec.axis_values[key]) for spec in specs if key in spec.axis_values)
        lines.append(f"  per {key}: " + ", ".join(f"{value} {count}" for value, count in sorted(values.items())))
    for variant, per_dataset in sorted(study.tuned.items()):
        for dataset, entry in sorted(per_dataset.items()):
            values = ", ".join(f"{key} = {axis_text(value)}" for key, value in entry.values.items())
            lines.append(f"  tuned {variant} on {dataset}: {values}")
    resources = study.resources
    epochs = _epochs(specs, study)
    per_dataset = {spec.dataset: epochs[spec] for spec in specs}
    if len(set(epochs.values())) > 1 and len(set(per_dataset.values())) == len(set(epochs.values())):
        epochs_text = ", ".join(f"{name} {count}" for name, count in sorted(per_dataset.items())) + " epochs"
    elif len(set(epochs.values())) > 1:
        epochs_text = f"{min(epochs.values())} to {max(epochs.values())} epochs"
    else:
        epochs_text = f"{next(iter(epochs.values()), study.training.epochs)} epochs"
    lines.append(
        f"  each trial asks {resources.cpu:g} CPU and {resources.gpu:g} GPU; "
        f"{epochs_text}; retries {resources.max_failures}"
    )
    if seconds_per_epoch:
        missing = sorted({spec.variant for spec in specs} - set(seconds_per_epoch))
        hours, gpu_hours = _hours(specs, study, seconds_per_epoch)
        note = f" (no epoch time for {', '.join(missing)})" if missing else ""
        lines.append(f"  estimated: {hours:.2f} trial-hours, {gpu_hours:.2f} GPU-hours{note}")
    lines.append("")
    width = max([36, *(len(spec.run_name) + 1 for spec in specs)])
    lines.append(f"  {'run name':<{width}} trial id")
    lines.extend(f"  {spec.run_name:<{width}} {spec.trial_id}" for spec in specs)
    return "\n".join(lines)


def implausible_estimate(
    specs: list[TrialSpec], study: StudyConfig, seconds_per_epoch: dict[str, float] | None = None
) -> str | None:
    """One line saying why the :func:`trial_table` estimate cannot be meant, and which key to check; else None.

    Implausible: more than :data:`PLAUSIBLE_GPU_HOURS` for the study, or one trial longer than
    :data:`PLAUSIBLE_TRIAL_HOURS` (a year), whatever the cluster.
    """
    if not seconds_per_epoch or not specs:
        return None
    _, gpu_hours = _hours(specs, study, seconds_per_epoch)
    epochs = _epochs(specs, study)
    longest = max(specs, key=lambda spec: seconds_per_epoch.get(spec.variant, 0.0) * epochs[spec])
    trial_hours = seconds_per_epoch.get(longest.variant, 0.0) * epochs[longest] / 3600
    too_much = []
    if gpu_hours > PLAUSIBLE_GPU_HOURS:
        too_much.append(f"{gpu_hours:.3g} GPU-hours in all (more than {PLAUSIBLE_GPU_HOURS:.0f})")
    if trial_hours > PLAUSIBLE_TRIAL_HOURS:
        too_much.append(f"{trial_hours / PLAUSIBLE_TRIAL_HOURS:.3g} years for trial {longest.run_name} alone")
    if not too_much:
        return None
    overridden = study.for_dataset(longest.dataset).training.epochs != study.training.epochs
    key = f"datasets.{longest.dataset}.training.epochs" if overridden else "training.epochs"
    key = "sweep.training.epochs" if "training.epochs" in longest.axis_values else key
    return (
        f"implausible estimate: {' and '.join(too_much)}; check {key} ({epochs[longest]}) and "
        f"--epoch-seconds ({longest.variant}={seconds_per_epoch[longest.variant]:g} seconds per epoch)"
    )


def given_forecast(
    study: StudyConfig, specs: list[TrialSpec], seconds_per_epoch: dict[str, float], nodes: list[Node]
) -> Forecast:
    """The forecast of ``specs`` on ``nodes`` from ``--epoch-seconds`` alone: epochs only, no validation, test or
    start-up (``--calibrate`` measures those); the study's GPU share where the nodes have GPUs."""
    epochs = _epochs(specs, study)
    gpu = study.resources.gpu if any(node.gpu for node in nodes) else 0.0
    trials = [
        (spec.variant, TrialCost(seconds_per_epoch.get(spec.variant, 0.0), 0.0, 0.0), epochs[spec], 1) for spec in specs
    ]
    result = forecast(
        study.study,
        study.config_hash(),
        trials,
        nodes,
        study.resources.cpu,
        gpu,
        cap=study.resources.max_concurrent_trials,
        measured_on="--epoch-seconds",
    )
    result.assumptions = "epochs take --epoch-seconds on every node, with nothing else counted; " + (
        "trials sharing a device do not slow each other; no trial fails or is retried"
    )
    return result


def _epochs(specs: list[TrialSpec], study: StudyConfig) -> dict[TrialSpec, int]:
    """Epochs of each trial of ``specs``: its data set's ``training`` override, then its sweep and tuned values."""
    views: dict[tuple, int] = {}
    for spec in specs:
        if (spec.dataset, spec.axes, spec.tuned) not in views:
            views[spec.dataset, spec.axes, spec.tuned] = study.for_trial(
                spec.dataset, spec.field_values
            ).training.epochs
    return {spec: views[spec.dataset, spec.axes, spec.tuned] for spec in specs}


def _hours(specs: list[TrialSpec], study: StudyConfig, seconds_per_epoch: dict[str, float]) -> tuple[float, float]:
    """Trial-hours and GPU-hours of ``specs`` (GPU-hours are trial-hours when the trials ask no GPU)."""
    epochs = _epochs(specs, study)
    hours = sum(seconds_per_epoch.get(spec.variant, 0.0) * epochs[spec] for spec in specs) / 3600
    return hours, hours * study.resources.gpu if study.resources.gpu else hours
