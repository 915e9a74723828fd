"""Every registered strategy, source and target is documented and listed: a new one that skips its
docs page or `harness ls` fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import cli
from harness.registry import SOURCES, STRATEGIES, TARGETS

ROOT = Path(__file__).resolve().parents[2]
STRATEGY_DOC = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
ALL_DOCS = README + "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))


def listed(capsys, what: str) -> set[str]:
    assert cli.main(["ls", what]) == 0
    return {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip() and not line.startswith("[")}


@pytest.mark.parametrize("name", sorted(e.name for e in STRATEGIES.entries()))
def test_every_strategy_has_its_section_its_readme_row_and_its_ls_line(name, capsys):
    assert re.search(rf"^## {re.escape(name)}\s*$", STRATEGY_DOC, re.M), f"docs/strategies.md has no '## {name}'"
    assert f"| `{name}` |" in README, f"README.md's strategy table has no row for {name}"
    assert name in listed(capsys, "strategies")


@pytest.mark.parametrize(("what", "registry"), [("sources", SOURCES), ("targets", TARGETS)])
def test_every_source_and_target_namespace_is_documented_and_listed(what, registry, capsys):
    names = sorted(e.name for e in registry.entries())
    assert listed(capsys, what) == set(names)
    undocumented = [n for n in names if f"`{n}/" not in ALL_DOCS]
    assert not undocumented, f"{what} with no `<namespace>/…` in README.md or docs/: {undocumented}"
