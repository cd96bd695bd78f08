"""Study -> the explicit list of trials (pure, deterministic, no Ray)."""

from __future__ import annotations

from collections import Counter

from trainables.config import SYNTHETIC_DATASETS, StudyConfig
from trainables.schema import format_alpha
from trainables.spec import TrialSpec


def expand(study: StudyConfig) -> list[TrialSpec]:
    """Every (dataset, variant, train_alpha, seed) of the study, in a canonical order.

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
                    specs.append(TrialSpec(study.study, dataset, variant, alpha, seed))
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
    resources = study.resources
    epochs = {name: study.for_dataset(name).training.epochs for name in by_dataset}  # per-dataset overrides
    if len(set(epochs.values())) > 1:
        epochs_text = ", ".join(f"{name} {count}" for name, count in sorted(epochs.items())) + " epochs"
    else:
        epochs_text = f"{next(iter(epochs.values()), study.training.epochs)} epochs"
    lines.append(
        f"  each trial asks {resources.cpu:g} CPU and {resources.gpu:g} GPU; "
        f"{epochs_text}; retries {resources.max_failures}"
    )
    if seconds_per_epoch:
        missing = sorted({spec.variant for spec in specs} - set(seconds_per_epoch))
        hours = sum(seconds_per_epoch.get(spec.variant, 0.0) * epochs[spec.dataset] for spec in specs) / 3600
        gpu_hours = hours * resources.gpu if resources.gpu else hours
        note = f" (no epoch time for {', '.join(missing)})" if missing else ""
        lines.append(f"  estimated: {hours:.2f} trial-hours, {gpu_hours:.2f} GPU-hours{note}")
    lines.append("")
    lines.append(f"  {'run name':<36} trial id")
    lines.extend(f"  {spec.run_name:<36} {spec.trial_id}" for spec in specs)
    return "\n".join(lines)
