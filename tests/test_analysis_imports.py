"""The analysis package stays light: no torch, Ray, MONAI or trainables, even indirectly."""

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
    "analysis.ood",
    "analysis.stats",
    "analysis.formatting",
    "analysis.figures",
    "analysis.report",
    "analysis.claims",
    "analysis.claim_checks",
    "analysis.evidence",
    "analysis.levels",
    "analysis.report_notes",
    "analysis.mlflow_report",
    "analysis.__main__",
]


def test_analysis_imports_no_training_stack():
    code = (
        "import importlib, json, sys\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in ('torch', 'ray', 'monai', 'trainables', 'orchestrator')"
        " if m in sys.modules)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
