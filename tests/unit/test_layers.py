"""The house's rules, read from the code's own imports: layers only point down, no cycles, no
module over 500 lines (what a strategy may import is tests/unit/test_strategy_imports.py).

docs/architecture.md draws the layers; this test is their definition. Every ``import`` in a module
counts, wherever it stands (a function-level or TYPE_CHECKING import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "harness"

# bottom to top; a module may import its own layer and the layers below it, never above
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("harness", "harness.errors", "harness.registry", "harness.digest", "harness.tasks",
              "harness.metrics", "harness.transferability")),
    ("config", ("harness.config",)),
    ("plan", ("harness.plan", "harness.plan_checks", "harness.search", "harness.suite", "harness.suite_schema",
              "harness.records", "harness.predictions", "harness.cache")),
    ("data", ("harness.sources", "harness.targets")),
    ("run", ("harness.run",)),
    ("strategies", ("harness.strategies",)),
    ("executors", ("harness.executors",)),
    ("report", ("harness.report",)),
    ("face", ("harness.cli", "harness.api", "harness.baseline", "harness.__main__")),
]

def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The harness module an imported name lives in (``harness.a.b.c`` → the longest module prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports(module: str) -> set[str]:
    """Every harness module ``module`` imports, resolved to module names."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                prefix = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names += [f"{prefix}.{a.name}" for a in node.names]  # a name, or a submodule
    found = {resolve(n) for n in names if n.startswith("harness.")}
    return {t for t in found if t and t not in (module, "harness")}


GRAPH = {m: imports(m) for m in MODULES}


def layer_of(module: str) -> int:
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    assert index is not None, f"{module} is in no layer: add it to LAYERS and to docs/architecture.md"
    return index


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_only_point_down():
    upward = []
    for module, targets in GRAPH.items():
        for target in targets:
            if layer_of(target) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_over_500_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"modules over 500 lines (split them by job): {long}"
