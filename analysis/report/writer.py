"""The report's writer: collects Markdown sections and writes the figure and table files they link to."""

from __future__ import annotations

import re
from pathlib import Path

from analysis.report import figures
from trainables.files import replacing

OWNED_SUFFIXES = (".png", ".pdf", ".csv", ".md", ".tex")


class Writer:
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
        with replacing(path) as temporary:
            write(temporary)
        self.tables.append(path)
        return f"tables/{path.name}"

    def csv(self, name: str, frame, index: bool = False) -> str:
        """Write ``frame`` to ``tables/<name>`` with missing cells as NaN; returns its link."""
        return self.table_file(name, lambda path: frame.to_csv(path, index=index, na_rep="NaN"))

    def text(self, text: str) -> None:
        self.sections.append(text)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
