"""The project's layout rules, read from the source (AST): who may import whom, no import
loops (module level or inside functions), no private names used across modules, no module
that needs a table of contents."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("shared", "controller", "worker", "pnas", "migrations", "bench")
MAX_LINES = 400  # a module longer than this wants splitting


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(path: Path, name: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement, nested ones too."""
    out = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, [a.name for a in node.names]))
    return out


def _resolve(target: str, names: list[str]) -> set[str]:
    """The project modules an import statement loads (a name may itself be a submodule)."""
    found = set()
    for n in names:
        if f"{target}.{n}" in MODULES:
            found.add(f"{target}.{n}")
    parts = target.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    if parts and not found:
        found.add(".".join(parts))
    return found


GRAPH = {m: set().union(*[_resolve(t, ns) for t, ns in _imports(p, m)] or [set()]) - {m} for m, p in MODULES.items()}


def _top(m: str) -> str:
    return m.split(".")[0]


def test_packages_keep_their_import_direction():
    forbidden = {"shared": {"controller", "worker", "pnas"}, "controller": {"worker", "pnas"}, "worker": {"controller", "pnas"}}
    bad = [f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps if _top(d) in forbidden.get(_top(m), ())]
    assert not bad, f"imports against the direction controller -> shared <- worker: {bad}"


def test_no_import_loops_anywhere():
    """Tarjan's strongly connected components over every import, function-level ones included
    (a package's own __init__ importing its submodules is not a loop)."""
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    loops: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                loops.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    assert not loops, f"import loops: {loops}"


def test_no_private_names_across_modules():
    """A leading underscore means "this module only": other modules, tests of the packages
    excepted, and the benchmarks use public names."""
    bad = []
    for m, p in MODULES.items():
        for target, names in _imports(p, m):
            if _top(target) in PACKAGES and target != m:
                bad += [f"{m} uses {target}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, bad


def test_no_module_needs_a_table_of_contents():
    long = {
        m: n
        for m, p in MODULES.items()
        if _top(m) in ("shared", "controller", "worker", "pnas") and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
