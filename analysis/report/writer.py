"""The report's writer: collects Markdown sections and writes the figure and table files they link to.

Files are written into a staging folder; :meth:`Writer.publish` moves them into the report folder,
removes the figures and tables of earlier reports that this one did not write again, and writes
``report.md`` last.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from analysis.report import figures
from trainables.files import replacing, write_text_atomic

OWNED_SUFFIXES = (".png", ".pdf", ".csv", ".md", ".tex")
OWNED_FOLDERS = ("figures", "tables")


class Writer:
    """Collects report sections and the files they point to, staged in ``root`` until published."""

    def __init__(self, root: Path) -> None:
        self.root, self.sections, self.figures, self.tables = root, [], [], []

    def figure(self, figure, stem: str, caption: str) -> None:
        paths = figures.save_figure(figure, self.root / "figures", _safe(stem))
        self.figures += paths
        self.sections.append(f"![{caption}](figures/{paths[0].name})\n\n*{caption}* ([PDF](figures/{paths[1].name}))\n")

    def table_file(self, name: str, write) -> str:
        path = self.root / "tables" / _safe(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as temporary:
            write(temporary)
        self.tables.append(path)
        return f"tables/{path.name}"

    def csv(self, name: str, frame, index: bool = False) -> str:
        """Write ``frame`` to ``tables/<name>`` with missing cells as NaN; returns its link."""
        return self.table_file(name, lambda path: frame.to_csv(path, index=index, na_rep="NaN"))

    def text(self, text: str) -> None:
        self.sections.append(text)

    def publish(self, folder: Path, report_name: str, text: str) -> Path:
        """Move the staged files into ``folder`` and write ``text`` to ``folder/report_name`` last.

        The old report is removed first, so a publish cut short leaves no report that links to a mix of old and
        new files. Figures and tables of earlier reports (files in ``figures/`` and ``tables/`` with an owned
        suffix) that this report did not write are removed. Afterwards :attr:`figures` and :attr:`tables` name
        the published files.

        Returns:
            The path of the report.
        """
        report = folder / report_name
        report.unlink(missing_ok=True)
        for sub in OWNED_FOLDERS:
            (folder / sub).mkdir(exist_ok=True)
            staged = sorted((self.root / sub).glob("*")) if (self.root / sub).is_dir() else []
            for path in staged:
                os.replace(path, folder / sub / path.name)
            kept = {path.name for path in staged}
            for path in (folder / sub).glob("*"):
                if path.suffix in OWNED_SUFFIXES and path.name not in kept:
                    path.unlink()
        self.figures = [folder / path.relative_to(self.root) for path in self.figures]
        self.tables = [folder / path.relative_to(self.root) for path in self.tables]
        self.root = folder
        write_text_atomic(report, text)
        return report


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
