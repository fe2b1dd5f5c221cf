"""The package's architecture, read statically with ``ast`` (ARCHITECTURE.md):

* layers import one way: ``depthinit.cli`` -> ``depthinit.applications`` -> the library (``depthinit.*``) ->
  ``depthinit.kernels`` (the top-level ``kernels/`` folder); every import counts, lazy ones inside functions too;
* no import cycles between modules (a package's ``__init__`` re-exporting its own submodules is not a cycle);
* nothing imports the tests;
* no class over 400 lines, no module over 600 lines, except ``depthinit/init.py``: the deliberate one-to-one
  mirror of ``torch.nn.init``; ``VarianceMonitor``, which only wires the monitor's units, within 300.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("kernels", "library", "applications", "cli")  # low to high: a module imports its own layer or lower
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400
WIRING = {("depthinit.monitor.core", "VarianceMonitor"): 300}  # classes that only wire units together
SIZE_EXEMPT = {"depthinit.init"}


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (``kernels/`` is installed as ``depthinit.kernels``)."""
    found = {}
    for base, prefix in ((ROOT / "depthinit", "depthinit"), (ROOT / "kernels", "depthinit.kernels")):
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> set[str]:
    """Every module of the package that ``name`` imports (absolute or relative, at any depth of the code)."""
    path = MODULES[name]
    package = name if _is_package(name) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            if t.startswith("kernels.") or t == "kernels":  # the source folder's own name
                t = "depthinit." + t
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def layer(name: str) -> str:
    if name.startswith("depthinit.kernels"):
        return "kernels"
    if name.startswith("depthinit.cli") or name == "depthinit.__main__":
        return "cli"
    if name.startswith("depthinit.applications"):
        return "applications"
    return "library"


def test_the_graph_is_read():
    """The reader finds what it must (else every check below would pass vacuously)."""
    assert {"depthinit.plan", "depthinit.cli", "depthinit.kernels.contract", "depthinit.applications"} <= set(GRAPH)
    assert "depthinit.kernels.contract" in GRAPH["depthinit.kernels.fill"]
    assert "depthinit.schemes" in GRAPH["depthinit.plan"]
    assert any(n.startswith("depthinit.applications") for n in GRAPH["depthinit.cli.demo"])


def test_layers_import_one_way():
    wrong = sorted(f"{a} ({layer(a)}) imports {b} ({layer(b)})" for a, deps in GRAPH.items() for b in deps
                   if LAYERS.index(layer(b)) > LAYERS.index(layer(a)))
    assert not wrong, "\n".join(wrong)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), ignoring a package's imports of its own
    submodules (re-exports)."""
    edges = {a: {b for b in deps if not (_is_package(a) and b.startswith(a + "."))} for a, deps in GRAPH.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert not _cycles(), "\n".join(" <-> ".join(c) for c in _cycles())


def test_nothing_imports_the_tests():
    bench = {p: _imports_of_file(p) for p in sorted((ROOT / "bench").glob("*.py"))}
    users = [str(p.relative_to(ROOT)) for p, mods in bench.items() if any(m.split(".")[0] == "tests" for m in mods)]
    for name, path in MODULES.items():
        if any(m.split(".")[0] == "tests" for m in _imports_of_file(path)):
            users.append(name)
    assert not users, users


def _imports_of_file(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_units_stay_small(name):
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    lines = len(path.read_text().splitlines())
    if name not in SIZE_EXEMPT:
        assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {lines} lines > {MAX_MODULE_LINES}"
    big = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)
           if isinstance(n, ast.ClassDef) and n.end_lineno - n.lineno + 1 > MAX_CLASS_LINES]
    assert not big, f"{path.relative_to(ROOT)}: classes over {MAX_CLASS_LINES} lines: {big}"
    for n in ast.walk(tree):
        limit = WIRING.get((name, getattr(n, "name", None)))
        if isinstance(n, ast.ClassDef) and limit is not None:
            assert n.end_lineno - n.lineno + 1 <= limit, f"{n.name}: {n.end_lineno - n.lineno + 1} lines > {limit}"


def test_the_wiring_classes_exist():
    assert all(name in MODULES for name, _ in WIRING)
