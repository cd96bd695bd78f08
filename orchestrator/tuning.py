"""The tuning stage (``python -m orchestrator.run --config X --tune``): each variant's values, searched fairly.

For each (data set, variant) of the study, one *tuning*: ``tune.samples`` configurations of the fields in
``tune.space``, each trained at most ``tune.max_epochs`` on the training split at ``tune.train_alpha`` and
judged by its best validation Dice (the test split is never evaluated), the poor ones stopped early by
ASHA, proposed by Optuna (or at random). Every variant gets the same budget and, first, the study's own
values, which is what "what tuning gained" is measured against.

In MLflow (the study's own experiment) each tuning is a parent run (``skipsweep.kind=tuning``) with one
child run per configuration (``tuning_trial``): the grid, its export and its view count neither. A
tuning whose parent run FINISHED is not run again; an interrupted one resumes (Tune restores its
search and its unfinished configurations). At the end the driver writes the *resolved* study file:
the original with ``tune:`` removed, ``study: <name>_tuned`` and a ``tuned:`` section pinning each
variant's values (and what tuning measured); running it runs the final grid.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainables.config import SYNTHETIC_DATASETS, StudyConfig, StudyConfigError, parse_study, stable_hash
from trainables.config.names import axis_text
from trainables.schema import (
    BEST_VAL_DICE,
    KIND_TAG,
    RUN_COLOUR_TAG,
    STATUS_TAG,
    STUDY_TAG,
    TUNE_OUTCOME_TAG,
    TUNED_TAG,
    TUNING_GROUP_TAG,
    TUNING_KIND,
    TUNING_TRIAL_KIND,
    format_alpha,
    kind_filter,
    search_all_runs,
    variant_colour,
)

TUNED_SUFFIX = "_tuned"


@dataclass(frozen=True)
class TuningGroup:
    """One tuning: a variant on a data set (at one alpha level for a synthetic one) under one search."""

    study: str
    dataset: str
    variant: str
    train_alpha: float | None
    search: str  # the tune section as JSON: another space or budget is another tuning

    @property
    def group_id(self) -> str:
        alpha = "" if self.train_alpha is None else format_alpha(self.train_alpha)
        return stable_hash(["tuning", self.study, self.dataset, self.variant, alpha, self.search], 12)

    @property
    def run_name(self) -> str:
        alpha = "" if self.train_alpha is None else f" a{format_alpha(self.train_alpha)}"
        return f"tuning {self.variant}{alpha} {self.dataset}"


def tuning_alpha(study: StudyConfig, dataset: str) -> float | None:
    """The alpha level a synthetic data set is tuned at: ``tune.train_alpha``, else the middle of its levels."""
    if dataset not in SYNTHETIC_DATASETS:
        return None
    assert study.tune is not None
    alphas = getattr(study.datasets, dataset).alphas
    return study.tune.train_alpha if study.tune.train_alpha is not None else alphas[(len(alphas) - 1) // 2]


def tuning_groups(study: StudyConfig) -> list[TuningGroup]:
    """Every tuning of the study, data set by data set, variant by variant (sorted)."""
    assert study.tune is not None
    search = study.tune.model_dump_json()
    return [
        TuningGroup(study.study, dataset, variant, tuning_alpha(study, dataset), search)
        for dataset in sorted(study.datasets.names)
        for variant in sorted(study.variants)
    ]


def study_defaults(study: StudyConfig, dataset: str) -> dict[str, Any] | None:
    """The study's own values of the tuned fields on ``dataset``; None when one lies outside the space."""
    assert study.tune is not None
    view = study.for_dataset(dataset)
    values = {}
    for key, search in study.tune.space.items():
        section, _, name = key.partition(".")
        value = getattr(getattr(view, section), name)
        value = list(value) if isinstance(value, tuple) else value
        inside = (
            any(axis_text(value) == axis_text(choice) for choice in search.choice)
            if search.choice is not None
            else (search.uniform or search.loguniform)[0] <= float(value) <= (search.uniform or search.loguniform)[1]
        )
        if not inside:
            return None
        values[key] = value
    return values


def search_algorithm_name(config) -> str:
    """``optuna`` or ``random``: what ``tune.search`` means on this machine (auto: Optuna when installed)."""
    if config.search != "auto":
        return config.search
    try:
        import optuna  # noqa: F401
    except ImportError:
        return "random"
    return "optuna"


def tuning_plan(study: StudyConfig) -> str:
    """What ``--tune`` would run, for ``--dry-run --tune``."""
    tuning = study.tune
    assert tuning is not None
    groups = tuning_groups(study)
    lines = [
        f"study {study.study}: tuning stage, {len(groups)} tuning(s) of {tuning.samples} configuration(s) each",
        f"  search: {search_algorithm_name(tuning)}; ASHA stops poor configurations after"
        f" {tuning.grace_epochs}+ epoch(s)"
        f" (reduction factor {tuning.reduction_factor:g}); at most {tuning.max_epochs} epochs each,"
        f" validated every epoch; metric: best validation Dice (the test split is never evaluated)",
        f"  at most {len(groups) * tuning.samples * tuning.max_epochs} epochs in all; tuning seed {tuning.seed}",
    ]
    for key, search in tuning.space.items():
        lines.append(f"  {key}: {search.kind} {axis_text(list(search.extremes()))}")
    for group in groups:
        defaults = study_defaults(study, group.dataset)
        baseline = "the study's own values first" if defaults is not None and tuning.include_defaults else "no baseline"
        lines.append(f"  {group.run_name:<40} {group.group_id}  ({baseline})")
    return "\n".join(lines)


def resolved_path(config: str) -> Path:
    """Where the resolved study file goes: beside the study file, ``<stem>_tuned.yaml``."""
    path = Path(config)
    return path.with_name(f"{path.stem}{TUNED_SUFFIX}{path.suffix or '.yaml'}")


def resolved_study(config: str, study: StudyConfig, tuned: dict[str, dict[str, dict]]) -> dict:
    """The study file's document with ``tune:`` removed, the name suffixed and ``tuned:`` set; validated."""
    document = yaml.safe_load(Path(config).read_text(encoding="utf-8-sig"))
    document.pop("tune", None)
    document["study"] = f"{study.study}{TUNED_SUFFIX}"
    if (document.get("tracking") or {}).get("experiment"):
        document["tracking"] = {**document["tracking"], "experiment": f"{study.experiment_name}{TUNED_SUFFIX}"}
    described = document.get("description") or study.study
    document["description"] = f"{described} (tuned: {', '.join(sorted(study.tune.space))})"
    document["tuned"] = tuned
    parse_study(document, source=str(resolved_path(config)), base=Path(config).resolve().parent)
    return document


def write_resolved(config: str, document: dict) -> Path:
    """Write the resolved study file whole (a temporary file renamed over it); its path."""
    path = resolved_path(config)
    header = (
        f"# Written by `python -m orchestrator.run --config {config} --tune` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {Path(config).name} with each variant's tuned values\n"
        "# pinned under tuned: (values, the tuning's MLflow run, and the best validation Dice of the chosen values\n"
        "# and of the study's own in that tuning). Run it for the final grid:\n"
        f"#   python -m orchestrator.run --config {path}\n"
    )
    text = header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=110)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(text)
    os.replace(handle.name, path)
    return path


def _find_parent(client, experiment_id: str, group: TuningGroup):
    runs = search_all_runs(
        client, experiment_id, f"{kind_filter(TUNING_KIND)} and tags.`{TUNING_GROUP_TAG}` = '{group.group_id}'"
    )
    return max(runs, key=lambda run: run.info.start_time) if runs else None


def _open_parent(client, experiment_id: str, group: TuningGroup, study: StudyConfig, policy):
    """The tuning's parent run: found (reopened if unfinished) or created with the search as params."""
    from mlflow.entities import Param

    from trainables.tracking import with_retries

    found = with_retries(lambda: _find_parent(client, experiment_id, group), "search tuning", policy)
    if found is not None:
        if found.info.status != "FINISHED":
            with_retries(lambda: client.update_run(found.info.run_id, status="RUNNING"), "reopen tuning", policy)
        return found
    tags = {
        KIND_TAG: TUNING_KIND,
        TUNING_GROUP_TAG: group.group_id,
        STUDY_TAG: study.study,
        "study": study.study,
        "dataset": group.dataset,
        "variant": group.variant,
        "train_alpha": "" if group.train_alpha is None else format_alpha(group.train_alpha),
        RUN_COLOUR_TAG: variant_colour(group.variant),
        STATUS_TAG: "running",
    }
    run = with_retries(lambda: client.create_run(experiment_id, tags=tags, run_name=group.run_name), "tuning", policy)
    tuning = study.tune
    params = {
        "variant": group.variant,
        "dataset": group.dataset,
        **({} if group.train_alpha is None else {"train_alpha": f"{group.train_alpha:g}"}),
        "samples": tuning.samples,
        "max_epochs": tuning.max_epochs,
        "grace_epochs": tuning.grace_epochs,
        "reduction_factor": tuning.reduction_factor,
        "seed": tuning.seed,
        **{
            f"space.{key}": f"{search.kind} {axis_text(list(search.extremes()))}"
            for key, search in tuning.space.items()
        },
    }
    batch = [Param(key, str(value)) for key, value in params.items()]
    with_retries(lambda: client.log_batch(run.info.run_id, params=batch), "tuning params", policy)
    return run


def _close_children(client, experiment_id: str, group: TuningGroup, policy) -> None:
    """Tuning trials Tune ended while their worker was mid-epoch (ASHA's stop, a removed actor): FINISHED."""
    from trainables.tracking import with_retries

    running = search_all_runs(
        client,
        experiment_id,
        f"{kind_filter(TUNING_TRIAL_KIND)} and tags.`{TUNING_GROUP_TAG}` = '{group.group_id}'"
        " and attributes.status = 'RUNNING'",
    )
    for run in running:
        run_id = run.info.run_id
        if TUNE_OUTCOME_TAG not in run.data.tags:  # else the trial said how it ended, then its worker was removed
            with_retries(lambda r=run_id: client.set_tag(r, TUNE_OUTCOME_TAG, "stopped_early"), "tuning", policy)
        with_retries(lambda r=run_id: client.set_terminated(r, "FINISHED"), "tuning trial", policy)


def choose(tried: list, defaults: dict[str, Any] | None) -> tuple[Any, Any]:
    """The configuration with the best validation Dice (ties: the first tried), and the study's own values' one.

    A configuration that failed (after Tune's retries) or never validated is not chosen.
    """
    scored = [config for config in tried if config.best_val_dice is not None and not config.failed]
    if not scored:
        return None, None
    best = max(scored, key=lambda config: config.best_val_dice)  # max keeps the first of equals
    own = None
    if defaults is not None:
        wanted = {key: axis_text(value) for key, value in defaults.items()}
        own = next((c for c in scored if {k: axis_text(v) for k, v in c.values.items()} == wanted), None)
    return best, own


def _finish_parent(client, run_id: str, entry: dict, tried: list, policy) -> None:
    from mlflow.entities import Metric

    from trainables.tracking import with_retries

    now = int(time.time() * 1000)
    metrics = {BEST_VAL_DICE: entry["val_dice"], "configurations": len(tried)}
    if entry.get("default_val_dice") is not None:
        metrics["default_val_dice"] = entry["default_val_dice"]
        metrics["gain"] = entry["val_dice"] - entry["default_val_dice"]
    metrics["stopped_early"] = sum(1 for config in tried if config.epochs < max(c.epochs for c in tried))
    batch = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
    with_retries(lambda: client.log_batch(run_id, metrics=batch), "tuning metrics", policy)
    with_retries(lambda: client.set_tag(run_id, TUNED_TAG, json.dumps(entry, sort_keys=True)), "tuned", policy)
    with_retries(lambda: client.set_tag(run_id, STATUS_TAG, "finished"), "tuning", policy)
    with_retries(lambda: client.set_terminated(run_id, "FINISHED"), "finish tuning", policy)


def run_tuning_stage(args: argparse.Namespace, study: StudyConfig, uri: str) -> int:
    """Checks, data, the study's lease, each tuning on Ray, the resolved study file; the exit status."""
    from mlflow import MlflowClient

    from orchestrator.driver import DISK_FULL, _connect, _written_folders, prepare_run, trial_gpu
    from orchestrator.ownership import claim_study
    from trainables.files import disk_full

    run = prepare_run(args, study, uri)
    storage, cache, policy = run.storage, run.cache, run.policy
    groups = tuning_groups(study)
    tuned: dict[str, dict[str, dict]] = {}
    with claim_study(
        study.study, storage, uri, study.experiment_name, retry_policy=policy, ui_tags=run.ui_tags
    ) as lease:
        from orchestrator.sweep import SweepPaths
        from orchestrator.tuning_ray import run_tuning

        client = MlflowClient(uri)
        experiment_id = lease.experiment_id  # the lease opened the store and the experiment
        paths = SweepPaths(uri, cache, storage)
        ray = None
        try:
            for number, group in enumerate(groups, start=1):
                parent = _open_parent(client, experiment_id, group, study, policy)
                if parent.info.status == "FINISHED" and TUNED_TAG in parent.data.tags:
                    entry = json.loads(parent.data.tags[TUNED_TAG])
                    print(f"[{study.study}] {group.run_name}: tuned already (run {parent.info.run_id}), kept")
                    tuned.setdefault(group.variant, {})[group.dataset] = entry
                    continue
                if ray is None:
                    ray = _connect(args)
                    gpu = trial_gpu(ray, study, args.config)
                print(f"[{study.study}] tuning {number}/{len(groups)}: {group.run_name} ({study.tune.samples} configs)")
                defaults = study_defaults(study, group.dataset) if study.tune.include_defaults else None
                started = time.monotonic()
                try:
                    tried = run_tuning(
                        study, group=group.group_id, dataset=group.dataset, variant=group.variant,
                        train_alpha=group.train_alpha, defaults=defaults, parent_run_id=parent.info.run_id,
                        paths=paths, gpu_per_trial=gpu, verbose=args.verbose,
                    )  # fmt: skip
                except Exception as error:  # Tune reads back what it wrote: a full disk ends the stage in one line
                    full = disk_full(error, _written_folders(uri, cache, storage))
                    if full is None:
                        raise
                    print(f"[{study.study}] stopped: {full}; free space, then run the same command", file=sys.stderr)
                    return DISK_FULL
                _close_children(client, experiment_id, group, policy)
                best, own = choose(tried, defaults)
                if best is None:
                    print(f"[{study.study}] {group.run_name}: no configuration finished an epoch", file=sys.stderr)
                    return 1
                entry = {
                    "values": best.values,
                    "tuning_run": parent.info.run_id,
                    "val_dice": round(best.best_val_dice, 6),
                    "default_val_dice": None if own is None else round(own.best_val_dice, 6),
                    "epochs": best.epochs,
                    "train_alpha": group.train_alpha,
                }
                _finish_parent(client, parent.info.run_id, entry, tried, policy)
                tuned.setdefault(group.variant, {})[group.dataset] = entry
                print(f"[{study.study}] {group.run_name}: {_entry_text(entry)} ({time.monotonic() - started:.0f} s)")
        finally:
            if ray is not None:
                ray.shutdown()
    path = write_resolved(args.config, resolved_study(args.config, study, tuned))
    _print_tuned(study, groups, tuned)
    _print_view(uri, experiment_id)
    print(f"resolved:    {path}")
    print(f"next:        python -m orchestrator.run --config {shlex.quote(str(path))}")
    return 0


def _entry_text(entry: dict) -> str:
    values = ", ".join(f"{key.rpartition('.')[2]}={axis_text(value)}" for key, value in entry["values"].items())
    own = entry.get("default_val_dice")
    gain = "" if own is None else f", study's own values {own:.4f} (gain {entry['val_dice'] - own:+.4f})"
    return f"{values}: best val Dice {entry['val_dice']:.4f}{gain}"


def _print_tuned(study: StudyConfig, groups: list[TuningGroup], tuned: dict) -> None:
    print(f"\n{'tuning':<40} chosen values and best validation Dice")
    for group in groups:
        entry = tuned.get(group.variant, {}).get(group.dataset)
        if entry is not None:
            print(f"{group.run_name:<40} {_entry_text(entry)}")


def _print_view(uri: str, experiment_id: str) -> None:
    """Where MLflow's UI shows the tuning: the configurations against each searched field."""
    from trainables.tracking.view import TUNING_VIEW_KEY, ui_lines

    print("\n" + "\n".join(ui_lines(uri, experiment_id, TUNING_VIEW_KEY)))


def check_tunable(study: StudyConfig, source: str) -> None:
    """``--tune`` needs a ``tune:`` section; one line naming the file when it has none."""
    if study.tune is None:
        raise StudyConfigError(f"{source}: --tune needs a tune: section (a search space and a budget); see README")
