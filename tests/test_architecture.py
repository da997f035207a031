"""The package's layers (docs/ARCHITECTURE.md): imports point down only, and no module takes part in a circle.

Every import counts, at module level or inside a function, under TYPE_CHECKING or not: a lazy import that runs
upward is still a dependency the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cattlepose"
# bottom to top; a module may import its own layer and the layers below it
LAYERS = ("core", "data", "metrics", "tracks", "runs", "models", "engine", "report", "commands", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__main__", "cli"):
        return "cli"  # the package root holds only the version; the command line is the top
    return parts[1]


def graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from a import b` names module a.b when b is one)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("cattlepose"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cattlepose"):
                assert node.level == 0, f"{path}: relative import"
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in files)
        edges[name] = {d for d in deps if d in files and d != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_layer():
    unknown = sorted(m for m in graph() if layer(m) not in LAYERS)
    assert not unknown, f"modules outside the layers {LAYERS}: {unknown}"


def test_imports_point_down_only():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted(
        f"{m} ({layer(m)}) imports {d} ({layer(d)})"
        for m, deps in graph().items()
        for d in deps
        if rank[layer(d)] > rank[layer(m)]
    )
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    assert cycles(graph()) == []


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The checks above would pass on a graph they cannot read; this one shows they can fail."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("cattlepose.models.codec") == "models" and layer("cattlepose.cli") == "cli"
    edges = graph()
    assert "cattlepose.core.config" in edges["cattlepose.engine.fit"]
    assert "cattlepose.data.formats.wide_csv" in edges["cattlepose.runs.rundir"]


@pytest.mark.parametrize("forbidden", ["torch", "cattlepose.models", "cattlepose.engine"])
def test_formats_never_import_torch_or_the_network(forbidden):
    """Reading and writing annotation and submission files needs no network code (DESIGN.md)."""
    for path in (PACKAGE / "data" / "formats").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not any(n == forbidden or n.startswith(forbidden + ".") for n in names), f"{path} imports {forbidden}"
