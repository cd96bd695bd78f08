"""trainables/ imports one way: no cycle between its modules, and no import hidden in a function to dodge one.

The graph is read from the source (module-level imports, ``if TYPE_CHECKING:`` blocks left
out), so a cycle fails here even where lazy imports would let it run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trainables"
# the only imports allowed inside functions, each avoiding a dependency most runs never need
LAZY_ALLOWED = {
    ("trainables.datasets.medical.read", "nibabel"),  # NIfTI volumes only
    ("trainables.tracking.system_metrics", "mlflow.system_metrics.system_metrics_monitor"),  # psutil, when sampling
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolve against this module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]  # `from pkg import submodule`


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def scan() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """Module -> trainables modules it imports at module level; and every import inside a function."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    lazy: list[tuple[str, str, int]] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()

        def visit(node: ast.AST, in_function: bool, module=module, is_package=is_package, edges=edges) -> None:
            if isinstance(node, ast.If) and is_type_checking(node):
                return
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = imported(node, module, is_package)
                if in_function:
                    lazy.append((module, targets[0], node.lineno))
                else:
                    edges.update(target for target in targets if target in modules and target != module)
            inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for child in ast.iter_child_nodes(node):
                visit(child, inside)

        visit(tree, False)
        graph[module] = edges
    return graph, lazy


def test_trainables_modules_import_each_other_without_a_cycle() -> None:
    graph, _ = scan()
    assert len(graph) > 20 and "trainables.config.study" in graph["trainables.config.loading"]
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle in trainables/: {' -> '.join(error.args[1])}") from None
    assert order.index("trainables.schema") < order.index("trainables.config.names")
    assert order.index("trainables.config") < order.index("trainables.datasets.registry")


def test_no_import_hides_in_a_function_but_the_optional_heavy_ones() -> None:
    _, lazy = scan()
    assert {(module, target) for module, target, _ in lazy} == LAZY_ALLOWED, lazy


def test_the_scan_sees_a_cycle_and_a_lazy_import(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "trainables"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from trainables.b import x\n")
    (package / "b.py").write_text("from trainables import a\n\ndef f():\n    import json\n")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "ROOT", tmp_path)
    monkeypatch.setattr(this, "PACKAGE", package)
    graph, lazy = scan()
    assert graph["trainables.a"] == {"trainables.b"} and "trainables.a" in graph["trainables.b"]
    assert lazy == [("trainables.b", "json", 4)]
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError:
        return
    raise AssertionError("the cycle a -> b -> a was not found")


def test_the_driver_starts_without_torch_or_mlflow():
    """`--help`, `--dry-run` and every refusal pay for what `import orchestrator.run` loads: never torch or MLflow."""
    heavy = "('torch', 'monai', 'ray', 'mlflow', 'pandas')"
    code = f"import sys, orchestrator.run; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
