"""Strategies are given services: no strategy module reaches into the runner, the planner, the
config loader, the executors or the search, and none builds a cache key (the runner owns keys,
versions and storage; a strategy asks its ``RunContext``). Read from the source with ``ast``, so
an import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STRATEGIES = Path(__file__).resolve().parents[2] / "harness" / "strategies"
ALLOWED_RUN = {"harness.run.context"}  # the type of what a strategy is given
FORBIDDEN = ("harness.run", "harness.plan", "harness.config.load", "harness.executors", "harness.search", "harness.cache")
KEY_BUILDERS = {"key", "entry", "frozen_key", "feature_key", "load_or_compute"}  # harness.cache / harness.run.features


def modules() -> list[Path]:
    return sorted(STRATEGIES.glob("*.py"))


def imported(tree: ast.AST) -> list[str]:
    """Every name an import statement brings in, fully qualified (``from harness.run import cache``
    is ``harness.run.cache``; ``from harness.run.loop import evaluate`` is ``harness.run.loop.evaluate``)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def forbidden(name: str) -> str | None:
    if name in ALLOWED_RUN or any(name.startswith(f"{a}.") for a in ALLOWED_RUN):
        return None
    return next((f for f in FORBIDDEN if name == f or name.startswith(f"{f}.")), None)


def violations(path: Path) -> set[tuple[str, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {(path.name, rule) for name in imported(tree) if (rule := forbidden(name))}


def key_calls(path: Path) -> list[str]:
    """Calls of a cache-key builder: ``cache.key(…)``, ``store.entry(…)``, ``frozen_key(…)``, …"""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
            if name in {"frozen_key", "feature_key"} or (name in KEY_BUILDERS and owner in {"cache", "store"}):
                calls.append(f"{path.name}:{node.lineno} {ast.unparse(f)}(…)")
    return calls


def test_the_rule_sees_what_it_forbids():
    bad = ast.parse("import harness.plan\nfrom harness.run import cache\nfrom harness.run.loop import evaluate\n"
                    "def f():\n    from harness.config.load import Collector\n    from harness.executors import base\n")
    assert {forbidden(n) for n in imported(bad)} == set(FORBIDDEN) - {"harness.search", "harness.cache"}
    assert forbidden("harness.search.choose") == "harness.search"
    fine = ast.parse("from harness.run.context import RunContext\nfrom harness.run import context\n"
                     "from harness.config.schema import Params\nfrom harness.registry import STRATEGIES\n")
    assert [forbidden(n) for n in imported(fine)] == [None] * 4


def test_the_rule_sees_key_builders(tmp_path):
    src = tmp_path / "probe.py"
    src.write_text("def adapt(ctx):\n    k = cache.key({'a': 1}, 2)\n    p = cache.entry(d, 'x', k)\n"
                   "    return frozen_key(s, t, data, 0), ctx.memo('fits', {'a': 1}, f)\n")
    assert [c.split(" ")[1] for c in key_calls(src)] == ["cache.key(…)", "cache.entry(…)", "frozen_key(…)"]


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_a_strategy_imports_nothing_above_it_but_its_context(path):
    found = violations(path)
    assert not found, f"{path.name} imports {sorted(r for _, r in found)}: take it from the RunContext instead"


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_a_strategy_builds_no_cache_key(path):
    assert not key_calls(path), f"ask ctx.memo / ctx.features instead: {key_calls(path)}"
