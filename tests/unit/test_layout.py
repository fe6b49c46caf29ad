"""GridPilot's modules import each other without cycles (TYPE_CHECKING
imports included), and none grows past the size that asks for a split (the
generated protocol code aside)."""

from __future__ import annotations

import ast
from pathlib import Path

import gridpilot

PACKAGE = "gridpilot"
MAX_LINES = 400
ROOT = Path(gridpilot.__file__).parent
GENERATED = ROOT / "schema" / "pb"


def _sources() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not p.is_relative_to(GENERATED)]


def _modules() -> dict[str, Path]:
    found = {}
    for path in _sources():
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        found[".".join((PACKAGE, *parts))] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The GridPilot modules ``name`` imports. ``from <its own package> import
    <module>`` counts as importing that module only (the package is already
    being imported)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names} & modules.keys()
            ancestor = name.startswith(target + ".") and len(subs) == len(node.names)
            out |= subs if ancestor else subs | {target}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return (out & modules.keys()) - {name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_modules_import_each_other_without_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_no_module_passes_the_split_size() -> None:
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in _sources()}
    assert {str(p): n for p, n in sizes.items() if n > MAX_LINES} == {}
