"""Build every table and figure of a study from its Parquet export, and one ``report.md`` embedding them.

    python -m analysis report results/miccai2023 --baseline noskip_unet

Writes ``tables/`` (CSV, Markdown, LaTeX), ``figures/`` (PNG and PDF) and ``report.md`` next to
the Parquet files. Nothing here reads MLflow: a report can be rebuilt offline.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from analysis import figures, report_notes
from analysis.evidence import Evidence
from analysis.formatting import (
    MATRIX_CORNER,
    frame_markdown,
    mean_std,
    ood_latex,
    ood_markdown,
    write_matrix_csv,
)
from analysis.frames import (
    JOURNAL_METRICS,
    LOWER_IS_BETTER,
    METRIC_NAMES,
    ExcludedRunsWarning,
    MissingDataWarning,
    cross_alpha_rows,
    image_scores,
    load_export,
)
from analysis.ood import rank_groups, rank_variants, robustness_cov
from analysis.tables import dice_matrix, relative_improvement, relative_matrix, require_variant

REPORT_FILE = "report.md"
OWNED_SUFFIXES = (".png", ".pdf", ".csv", ".md", ".tex")


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


class _Writer:
    """Collects report sections and the files they point to."""

    def __init__(self, root: Path) -> None:
        self.root, self.sections, self.figures, self.tables = root, [], [], []
        for sub in ("figures", "tables"):
            for path in (root / sub).glob("*"):
                if path.suffix in OWNED_SUFFIXES:
                    path.unlink()

    def figure(self, figure, stem: str, caption: str) -> None:
        paths = figures.save_figure(figure, self.root / "figures", _safe(stem))
        self.figures += paths
        self.sections.append(f"![{caption}](figures/{paths[0].name})\n\n*{caption}* ([PDF](figures/{paths[1].name}))\n")

    def table_file(self, name: str, write) -> str:
        path = self.root / "tables" / _safe(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        self.tables.append(path)
        return f"tables/{path.name}"

    def csv(self, name: str, frame, index: bool = False) -> str:
        """Write ``frame`` to ``tables/<name>`` with missing cells as NaN; returns its link."""
        return self.table_file(name, lambda path: frame.to_csv(path, index=index, na_rep="NaN"))

    def text(self, text: str) -> None:
        self.sections.append(text)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


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
        ValueError: The baseline is not among the study's variants.
    """
    root = Path(export_dir)
    study = load_export(root)
    if study.runs.empty:
        raise ValueError(f"the export in {root} holds no finished runs")
    require_variant(study.runs, baseline)
    writer = _Writer(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = image_scores(study.runs, study.per_image)
        evidence = Evidence(images, n_resamples=n_resamples, seed=seed, level=level)
        _synthetic_sections(writer, evidence, baseline)
        _ood_sections(writer, evidence, baseline)
        levels = report_notes.levels_section(writer, images)
        if levels:
            writer.text(levels)
        writer.text("## Learning curves\n")
        writer.figure(
            figures.plot_learning_curves(study.epochs, study.runs),
            "learning_curves",
            "Validation Dice per epoch, mean and std over runs",
        )
        writer.text("## Dice against texture similarity\n")
        writer.figure(
            figures.plot_dice_vs_texture(images),
            "dice_vs_texture_similarity",
            "Per-image Dice against the image's texture similarity, binned means per variant",
        )
        writer.sections.insert(0, report_notes.claims_section(writer, evidence))
    ours = (MissingDataWarning, ExcludedRunsWarning)
    found = [str(w.message) for w in caught if issubclass(w.category, ours)]
    messages = list(dict.fromkeys(report_notes.mixed_settings(study.runs) + found))
    for warning in caught:
        warnings.warn(warning.message, warning.category, stacklevel=2)
    text = _header(study, baseline, messages) + "\n".join(writer.sections) + "\n" + report_notes.METHODS
    report = root / REPORT_FILE
    _write_atomic(report, text)
    return ReportResult(report=report, figures=writer.figures, tables=writer.tables, warnings=messages)


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder: readers see the old file or the new one, never half."""
    descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(scratch, 0o644)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def _header(study, baseline: str, messages: list[str]) -> str:
    runs = study.runs
    lines = [
        f"# Study report: {study.study or 'unnamed study'}\n",
        "Built from the Parquet export in this folder; rebuild with `python -m analysis report <this folder>`.\n",
        f"- finished trial runs: {len(runs)}",
        f"- data sets: {', '.join(sorted(runs['dataset'].unique()))}",
        f"- variants: {', '.join(sorted(runs['variant'].unique()))}; baseline: {baseline}",
        f"- seeds: {', '.join(map(str, sorted(runs['seed'].unique())))}",
    ]
    excluded = study.manifest.get("excluded", [])
    if excluded:
        named = ", ".join(f"{e['run_name']} ({e['status']})" for e in excluded)
        lines.append(f"- left out because they did not finish: {named}")
    lines.append("")
    if messages:
        lines += ["## Warnings\n", *[f"- {message}" for message in messages], ""]
    return "\n".join(lines) + "\n"


def _synthetic_sections(writer: _Writer, evidence: Evidence, baseline: str) -> None:
    if cross_alpha_rows(evidence.images).empty:
        return
    scores = evidence.scores("dice")
    relative = relative_improvement(scores, baseline)
    writer.text("## In-domain relative improvement (synthetic)\n")
    writer.figure(
        figures.plot_relative_improvement(relative, baseline),
        "relative_improvement",
        f"(Dice - Dice of {baseline}) / Dice of {baseline} on the in-domain test set; bars: std over seeds",
    )
    link = writer.csv("relative_improvement.csv", relative)
    shown = relative.assign(cell=[mean_std(m, s) for m, s in zip(relative["mean"], relative["std"], strict=True)])
    for dataset, block in shown.groupby("dataset", sort=False):
        wide = block.pivot(index="train_alpha", columns="variant", values="cell")
        wide.index.name = "trained and tested on alpha"
        writer.text(
            f"**{dataset}**: relative improvement, mean (std) over seeds ([CSV]({link}))\n\n" + frame_markdown(wide)
        )
    writer.text("## Cross-alpha robustness matrices (synthetic)\n\n" + report_notes.CROSS_ALPHA_NOTE)
    for dataset in sorted(scores["dataset"].unique()):
        for variant in scores.loc[scores["dataset"] == dataset, "variant"].unique():
            raw = dice_matrix(scores, dataset, variant)
            raw_link = writer.table_file(
                f"dice_matrix_{dataset}_{variant}.csv", lambda p, m=raw: write_matrix_csv(m, p)
            )
            writer.figure(
                figures.plot_matrix_heatmap(
                    raw, f"{variant}: Dice ({dataset})", diverging=False, colorbar_label="Dice"
                ),
                f"dice_matrix_{dataset}_{variant}",
                f"Dice of {variant}, mean over seeds ({dataset})",
            )
            writer.text(f"Dice of {variant} ([CSV]({raw_link})):\n\n" + frame_markdown(raw, corner=MATRIX_CORNER))
            if variant == baseline:
                continue
            matrix = relative_matrix(scores, dataset, variant, baseline)
            tests = evidence.matrix(dataset, variant, baseline, "dice")
            marks = tests.pivot(index="train_alpha", columns="test_alpha", values="significant")
            link = writer.table_file(
                f"relative_matrix_{dataset}_{variant}.csv", lambda p, m=matrix: write_matrix_csv(m, p)
            )
            tests_link = writer.csv(f"tests_matrix_{dataset}_{variant}.csv", tests)
            writer.figure(
                figures.plot_matrix_heatmap(
                    matrix,
                    f"{variant} vs {baseline}: relative Dice ({dataset})",
                    significant=marks,
                    colorbar_label="relative Dice difference",
                ),
                f"relative_matrix_{dataset}_{variant}",
                f"(Dice {variant} - Dice {baseline}) / Dice {baseline}, mean over seeds ({dataset})",
            )
            writer.text(
                f"Relative difference of {variant} vs {baseline} ([CSV]({link}), "
                f"[paired tests]({tests_link})):\n\n" + frame_markdown(matrix, corner=MATRIX_CORNER)
            )


def _ood_sections(writer: _Writer, evidence: Evidence, baseline: str) -> None:
    images = evidence.images
    metrics = ["dice", *[m for m in JOURNAL_METRICS if m in images and images[m].notna().any()]]
    dice_table = None
    for metric in metrics:
        table = evidence.ood(baseline, metric)
        if table.empty:
            continue
        if metric == "dice":
            dice_table = table
            writer.text("## Out-of-domain performance\n")
        name = METRIC_NAMES[metric]
        direction = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
        csv = writer.csv(f"ood_{metric}.csv", table)
        markdown = ood_markdown(table, metric)
        writer.table_file(f"ood_{metric}.md", lambda p, text=markdown: p.write_text(text))
        tex = writer.table_file(f"ood_{metric}.tex", lambda p, t=table, m=metric: p.write_text(ood_latex(t, m)))
        writer.text(
            f"### {name} ({direction}); mean (std) over test images and seeds\n\n{markdown}\n"
            f"Bold: best per row. †: differs from {baseline} after Holm correction. "
            f"[CSV with p-values and intervals]({csv}), [LaTeX]({tex}).\n"
        )
    if dice_table is None or not (dice_table.groupby("label")["level"].nunique() >= 2).any():
        return
    cov = robustness_cov(dice_table)
    cov_link = writer.csv("robustness_cov.csv", cov)
    ranking = {"variant": rank_variants(cov), "group": rank_groups(cov)}
    writer.text(
        f"## Robustness across test levels\n\nCoV of the per-level mean Dice (lower = more robust); "
        f"[per data set]({cov_link}).\n"
    )
    for kind, table in ranking.items():
        link = writer.csv(f"robustness_ranking_{kind}s.csv", table, index=True)
        table = table.copy()
        table.index.name = kind
        writer.text(f"Ranking of {kind}s ([CSV]({link})):\n\n" + frame_markdown(table, digits=4))
