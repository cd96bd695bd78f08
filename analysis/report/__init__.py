"""Build every table and figure of a study from its Parquet export, and one ``report.md`` embedding them.

    python -m analysis report results/miccai2023 --baseline noskip_unet

Writes ``tables/`` (CSV, Markdown, LaTeX), ``figures/`` (PNG and PDF) and ``report.md`` next to
the Parquet files. Nothing here reads MLflow: a report can be rebuilt offline.

A report refuses an export whose files do not belong together (see :func:`analysis.frames.load_export`)
and holds the folder's lock while it runs, so a second report or an export into the same folder is
refused with one line. It builds every file in a hidden staging folder, then moves them in, removes
the figures and tables of earlier reports it did not write again, and writes ``report.md`` last.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.claims import evaluate_claims
from analysis.claims.evidence import Evidence
from analysis.frames import (
    PREDICTIONS_FOLDER,
    SWEEP_PREFIX,
    TUNED_PREFIX,
    ExcludedRunsWarning,
    ExportedStudy,
    MissingDataWarning,
    folder_lock,
    image_scores,
    load_export,
)
from analysis.report import figures, sections, summary
from analysis.report import notes as report_notes
from analysis.report.across import (
    SLICES_FOLDER,
    across_section,
    holds_across,
    slice_folder,
    slice_label,
    slices,
    sweep_axes,
)
from analysis.report.forecast import forecast_section
from analysis.report.per_level import per_level_section
from analysis.report.pictures import predictions_section
from analysis.report.subsets import subsets_section
from analysis.report.texture_range import texture_range_section
from analysis.report.tuning import tuning_section
from analysis.report.writer import Writer
from analysis.tables.relative import require_variant

REPORT_FILE = "report.md"
STAGING_PREFIX = ".report-"  # the hidden folder a report is built in before its files move into place


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes:
        report: Path of ``report.md``.
        figures: Figure files (PNG and PDF).
        tables: Table files (CSV, Markdown, LaTeX).
        warnings: Messages about missing data, also listed in the report.
    """

    report: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verdicts: pd.DataFrame | None = None  # evaluate_claims' table (a swept study's: the across-slices table)


def build_report(
    export_dir: str | Path,
    baseline: str = "noskip_unet",
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.05,
) -> ReportResult:
    """Compute the tables and figures of a study from its export and write ``report.md``.

    Args:
        export_dir: Folder written by :func:`analysis.export.export_study`; the report goes there too.
        baseline: Variant every other one is compared with.
        n_resamples: Bootstrap resamples per table cell.
        seed: Bootstrap seed.
        level: Family-wise error rate of the Holm correction.

    Returns:
        A :class:`ReportResult`. Warnings about missing data are issued (and listed in the report).

    Raises:
        FileNotFoundError: The folder holds no export.
        IncompleteExportError: The export's files do not belong together.
        FolderBusyError: Another report or export is writing into the folder.
        ValueError: The baseline is not among the study's variants.
    """
    root = Path(export_dir)
    with folder_lock(root, "analysis report"):
        study = load_export(root)
        if study.runs.empty:
            raise ValueError(f"the export in {root} holds no finished runs")
        require_variant(study.runs, baseline)
        cut = slices(study)
        if len(cut) > 1:
            return _build_across(root, study, cut, baseline, n_resamples, seed, level)
        shutil.rmtree(root / SLICES_FOLDER, ignore_errors=True)  # an earlier report's of a swept export
        return _staged(root, lambda staging: _build(root, staging, study, baseline, n_resamples, seed, level))


def _staged(folder: Path, build):
    """Run ``build(staging)`` with a fresh hidden staging folder in ``folder`` (and any killed report's removed)."""
    for stale in folder.glob(f"{STAGING_PREFIX}*"):  # left by a report killed outright; only a lock holder stages
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=STAGING_PREFIX))
    try:
        return build(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build_across(
    root: Path, study: ExportedStudy, cut: list, baseline: str, n_resamples: int, seed: int, level: float
) -> ReportResult:
    """A swept export: each slice's full report in ``slices/<values>/``, then ``report.md``: do the verdicts hold?"""
    labels, folders, results = [], [], []
    for values, part in cut:
        require_variant(part.runs, baseline)
        folder = root / SLICES_FOLDER / slice_folder(values)
        folder.mkdir(parents=True, exist_ok=True)
        labels.append(slice_label(values))
        folders.append(folder.name)
        results.append(
            _staged(
                folder,
                lambda staging, f=folder, p=part: _build(
                    f, staging, p, baseline, n_resamples, seed, level, up="../../"
                ),
            )
        )
    for old in (root / SLICES_FOLDER).iterdir():
        if old.is_dir() and old.name not in folders:
            shutil.rmtree(old)  # a slice of an earlier export of this folder
    table = holds_across([result.verdicts for result in results], labels)
    axes = sweep_axes(study.runs)

    def publish(staging: Path) -> ReportResult:
        writer = Writer(staging)
        link = writer.csv("verdicts_across_sweep.csv", table)
        messages = list(dict.fromkeys(m for result in results for m in result.warnings))
        text = _header(study, baseline, messages) + across_section(table, labels, folders, axes)
        text += f"\n([CSV]({link}))\n"
        texture_range = texture_range_section(writer, study, baseline, level)
        if texture_range:
            text += "\n" + texture_range
        cost = forecast_section(writer, study.runs, study.manifest.get("forecast"))
        if cost:
            text += "\n" + cost
        report = writer.publish(root, REPORT_FILE, text)
        figures = [path for result in results for path in result.figures]
        tables = writer.tables + [path for result in results for path in result.tables]
        return ReportResult(report=report, figures=figures, tables=tables, warnings=messages, verdicts=table)

    return _staged(root, publish)


def _build(
    root: Path,
    staging: Path,
    study: ExportedStudy,
    baseline: str,
    n_resamples: int,
    seed: int,
    level: float,
    up: str = "",
) -> ReportResult:
    """:func:`build_report` once ``root`` is locked and its export read: files go to ``staging``, then into ``root``.

    ``up`` leads from ``root`` to the export's folder (a slice's report sits two folders below it).
    """
    writer = Writer(staging)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = image_scores(study.runs, study.per_image)
        evidence = Evidence(images, n_resamples=n_resamples, seed=seed, level=level)
        sections.synthetic_sections(writer, evidence, baseline)
        sections.ood_sections(writer, evidence, baseline)
        per_level = per_level_section(writer, evidence)
        if per_level:
            writer.text(per_level)
        tuning = tuning_section(writer, study.runs)
        if tuning:
            writer.text(tuning)
        skip_subsets = subsets_section(writer, images, level)
        if skip_subsets:
            writer.text(skip_subsets)
        table1 = report_notes.table1_section(writer, evidence)
        if table1:
            writer.text(table1)
        levels = sections.levels_section(writer, images)
        if levels:
            writer.text(levels)
        writer.text("## Learning curves\n")
        writer.figure(
            figures.plot_learning_curves(study.epochs, study.runs),
            "learning_curves",
            "Validation Dice per epoch, one panel per data set and training alpha: mean over seeds, band +- std over "
            "seeds (clipped to [0, 1])",
        )
        writer.text("## Dice against texture similarity\n")
        writer.figure(
            figures.plot_dice_vs_texture(images),
            "dice_vs_texture_similarity",
            "Per-image Dice against texture similarity, one panel per data set and test condition; lines: binned means "
            "per variant, broken where a TS range holds no images",
        )
        pictures = predictions_section(study.pictures, f"{up}{PREDICTIONS_FOLDER}")
        if pictures:
            writer.text(pictures)
        cost = "" if up else forecast_section(writer, study.runs, study.manifest.get("forecast"))  # the study's
        if cost:
            writer.text(cost)
        verdicts = evaluate_claims(evidence)
        writer.sections.insert(0, report_notes.claims_section(writer, verdicts))
        writer.sections.insert(0, summary.summary_section(study.runs, evidence, verdicts, baseline))
    ours = (MissingDataWarning, ExcludedRunsWarning)
    found = [str(w.message) for w in caught if issubclass(w.category, ours)]
    messages = list(dict.fromkeys(report_notes.mixed_settings(study.runs) + found))
    for warning in caught:
        warnings.warn(warning.message, warning.category, stacklevel=3)
    text = _header(study, baseline, messages, up) + "\n".join(writer.sections) + "\n" + report_notes.METHODS
    report = writer.publish(root, REPORT_FILE, text)
    return ReportResult(
        report=report, figures=writer.figures, tables=writer.tables, warnings=messages, verdicts=verdicts
    )


def resource_shapes(runs: pd.DataFrame) -> str:
    """The resource shapes the trials ran with, from their params (``1 CPU + 0.25 GPU, on cpu (36 runs)``); "" when
    the runs predate those params."""
    columns = ["param.resources.cpu", "param.resources.gpu", "param.device"]
    if not all(column in runs for column in columns):
        return ""
    recorded = runs[columns].notna().all(axis=1)
    shown = runs.loc[recorded, columns].map(lambda v: f"{v:g}" if isinstance(v, int | float) else str(v))
    counts = shown.value_counts(sort=False).sort_index()
    shapes = [f"{cpu} CPU + {gpu} GPU, on {device} ({n} runs)" for (cpu, gpu, device), n in counts.items()]
    if not recorded.all():
        shapes.append(f"not recorded ({(~recorded).sum()} runs, older than these params)")
    return "; ".join(shapes)


def _header(study, baseline: str, messages: list[str], up: str = "") -> str:
    runs = study.runs
    built = (
        "Built from the Parquet export in this folder; rebuild with `python -m analysis report <this folder>`.\n"
        if not up
        else f"One slice of the sweep, built from the Parquet export in `{up}`; rebuild with "
        "`python -m analysis report <that folder>`.\n"
    )
    lines = [
        f"# Study report: {study.study or 'unnamed study'}\n",
        built,
        f"- finished trial runs: {len(runs)}",
        f"- data sets: {', '.join(sorted(runs['dataset'].unique()))}",
        f"- variants: {', '.join(sorted(runs['variant'].unique()))}; baseline: {baseline}",
        f"- seeds: {', '.join(map(str, sorted(runs['seed'].unique())))}",
    ]
    for axis in sweep_axes(runs):
        values = ", ".join(map(str, sorted(runs[axis].unique())))
        lines.append(f"- sweep: {axis.removeprefix(SWEEP_PREFIX)} = {values}")
    shapes = resource_shapes(runs)
    if shapes:
        lines.append(f"- resources per trial: {shapes}")
    tuned = sorted(column.removeprefix(TUNED_PREFIX) for column in runs.columns if column.startswith(TUNED_PREFIX))
    if tuned:
        lines.append(f"- tuned per variant: {', '.join(tuned)} (see Tuning)")
    excluded = study.manifest.get("excluded", [])
    if excluded:
        named = ", ".join(f"{e['run_name']} ({e['status']})" for e in excluded)
        lines.append(f"- left out because they did not finish: {named}")
    lines.append("")
    if messages:
        lines += ["## Warnings\n", *[f"- {message}" for message in messages], ""]
    return "\n".join(lines) + "\n"
