"""No import cycles among the project's modules (actors/, transport/, supervisor.py).

A cycle makes the import order matter and usually means two modules share a
piece that belongs in a third. Imports inside functions count too (a lazy
import hides a cycle, it does not remove it); imports under
``if TYPE_CHECKING:`` do not, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
Graph = dict[str, set[str]]


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of actors/, transport/ and supervisor.py."""
    paths = [*root.glob("actors/**/*.py"), *root.glob("transport/**/*.py"), root / "supervisor.py"]
    modules = {}
    for path in paths:
        if path.exists() and ".venv" not in path.parts:
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported_names(name: str, is_package: bool, tree: ast.Module) -> set[str]:
    skipped = {id(n) for node in ast.walk(tree)
               if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(modules: dict[str, Path]) -> Graph:
    """Module -> the project modules its imports run: the named module and the parent
    packages Python initialises first, except the importer's own (already running)."""
    graph: Graph = {}
    for name, path in modules.items():
        edges: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target in _imported_names(name, path.name == "__init__.py", tree):
            bits = target.split(".")
            for i in range(1, len(bits) + 1):
                candidate = ".".join(bits[:i])
                own_parent = name.startswith(candidate + ".") and i < len(bits)
                if candidate in modules and candidate != name and not own_parent:
                    edges.add(candidate)
        graph[name] = edges
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_project_has_no_import_cycles() -> None:
    modules = project_modules(REPO)
    assert "actors.membership.core.swim" in modules and "supervisor" in modules
    assert cycles(import_graph(modules)) == []


def test_a_cycle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "actors"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from actors.b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from actors import a\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from actors.d import x\n")
    (pkg / "d.py").write_text("from actors.c import y\n")
    assert cycles(import_graph(project_modules(tmp_path))) == [["actors.a", "actors.b"]]


def test_a_package_and_its_submodules_importing_each_other_is_no_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "actors" / "sim"
    pkg.mkdir(parents=True)
    (tmp_path / "actors" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from actors.sim.views import V\n")
    (pkg / "views.py").write_text("from actors.sim.cluster import Sim\n")
    (pkg / "cluster.py").write_text("import math\n")
    assert cycles(import_graph(project_modules(tmp_path))) == []
    (pkg / "cluster.py").write_text("from actors.sim import V\n")  # the package itself: real
    assert cycles(import_graph(project_modules(tmp_path))) == [
        ["actors.sim", "actors.sim.cluster", "actors.sim.views"]]
