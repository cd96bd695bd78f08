"""The analysis package stays light: no torch, Ray, MONAI or orchestrator, even indirectly.

Of ``trainables`` it reads only its two standard-library modules: ``trainables.schema`` (the MLflow names both
sides share) and ``trainables.files`` (the one atomic write every writer uses).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MODULES = [
    "analysis",
    "analysis.export",
    "analysis.frames",
    "analysis.tables",
    "analysis.tables.ood",
    "analysis.statistics.paired",
    "analysis.report.formatting",
    "analysis.report.figures",
    "analysis.report",
    "analysis.claims",
    "analysis.claims.checks",
    "analysis.claims.evidence",
    "analysis.tables.levels",
    "analysis.report.notes",
    "analysis.report.to_mlflow",
    "analysis.claims.paper",
    "analysis.claims.table1",
    "analysis.statistics.seeds",
    "analysis.statistics.cells",
    "analysis.report.summary",
    "analysis.__main__",
]


def modules_loaded(imports: str, kept: str) -> list[str]:
    """The modules that ``imports`` loads in a fresh interpreter, of those for which ``kept`` (on ``m``) holds."""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{imports}\n"
        f"print(json.dumps(sorted(m for m in set(sys.modules) - before if {kept})))\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_analysis_imports_no_training_stack():
    imports = "import importlib\n" + f"for name in {MODULES!r}: importlib.import_module(name)"
    heavy = "m.split('.')[0] in ('torch', 'ray', 'monai', 'trainables', 'orchestrator')"
    assert modules_loaded(imports, heavy) == ["trainables", "trainables.files", "trainables.schema"]


def test_the_shared_modules_import_the_standard_library_only():
    not_stdlib = "m.split('.')[0] not in sys.stdlib_module_names"
    assert modules_loaded("import trainables.schema", not_stdlib) == ["trainables", "trainables.schema"]
    assert modules_loaded("import trainables.files", not_stdlib) == ["trainables", "trainables.files"]
