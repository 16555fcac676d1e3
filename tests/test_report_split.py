"""The report code's imports flow one way (store, stats -> tables -> claims -> report -> plots -> formats),
and the report path loads no heavy package before it needs one.

The import graph is read from the source (ast): every import, at module level or inside a function,
and the format modules that bench.results.formats imports by name."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import bench.results

RESULTS = Path(bench.results.__file__).parent
HEAVY = ("torch", "transformers", "datasets", "scipy", "sklearn", "matplotlib")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(RESULTS.parent.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(RESULTS.rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The absolute module names one import statement names (`from a import b` names a.b when b is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the module's package
            pkg = module.split(".") if is_package else module.split(".")[:-1]
            pkg = pkg[:len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([node.module] if node.module else []))
        return [base] + [f"{base}.{a.name}" for a in node.names]
    return []


def _dynamic_formats(tree: ast.Module) -> list[str]:
    """bench.results.formats imports each format's module by name from its MODULES table."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MODULES" for t in node.targets):
            return [f"bench.results.formats.{m}" for m in ast.literal_eval(node.value).values()]
    return []


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = set(_dynamic_formats(tree))
        for node in ast.walk(tree):  # module level and inside functions alike
            found.update(_imported(node, name, path.name == "__init__.py"))
        graph[name] = {m for m in found if m in mods and m != name and m != "bench.results"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def _module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported when the module is imported (functions and TYPE_CHECKING blocks skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                walk(node.orelse)
                continue
            out.update(m.split(".")[0] for m in _imported(node, _module_name(path), path.name == "__init__.py"))
            for field in ("body", "orelse", "finalbody", "handlers"):
                walk([n for n in getattr(node, field, []) if isinstance(n, ast.stmt)])

    walk(tree.body)
    return out


def test_every_report_module_is_in_the_graph_and_the_layout_holds():
    graph = import_graph()
    assert {"bench.results.tables", "bench.results.claims", "bench.results.report", "bench.results.tidy",
            "bench.results.formats", "bench.results.formats.markdown", "bench.results.formats.html",
            "bench.results.formats.parquet"} <= set(graph)
    # the direction the layout names: each of these never reaches back
    assert "bench.results.claims" in graph["bench.results.report"]
    assert "bench.results.tables" in graph["bench.results.claims"]
    assert "bench.results.formats.markdown" in graph["bench.results.formats"]  # by name, lazily


def test_no_import_cycle_among_the_report_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_sees_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("path", sorted(RESULTS.rglob("*.py")), ids=lambda p: _module_name(p))
def test_no_report_module_imports_a_heavy_package_at_module_level(path):
    assert not _module_level_imports(path) & set(HEAVY)


def test_formats_package_imports_neither_pandas_nor_matplotlib():
    assert not _module_level_imports(RESULTS / "formats" / "__init__.py") & {"pandas", "matplotlib"}
    code = ("import sys, bench.results.formats as f; assert f.FORMATS; "
            "print(','.join(m for m in ('pandas', 'matplotlib', 'numpy') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_the_report_path_loads_no_heavy_package():
    """Reading a store and rendering md/csv/json/latex never imports torch, matplotlib, scipy, ..."""
    code = ("import sys; import bench.results.report, bench.results.paper, bench.results.status, "
            "bench.results.tidy; from bench.results import formats; "
            "[formats.module_of(f) for f in ('md', 'csv', 'json', 'latex', 'html', 'parquet')]; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_report_modules_are_presentation_for_the_code_version():
    """Editing a report module must not change the code version (part of every run id), and the list must
    name no file that is gone: every module of bench/results/ but the store is presentation."""
    from bench.environment import PRESENTATION, ROOT

    assert all((ROOT / rel).is_file() for rel in PRESENTATION), sorted(r for r in PRESENTATION if not (ROOT / r).is_file())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "bench" / "results").rglob("*.py")}
    assert modules - PRESENTATION == {"bench/results/store.py", "bench/results/__init__.py"}
