"""Every registered strategy, source and target is documented and listed: a new one that skips its
docs page or `harness ls` fails here. Every benchmark has its figures in docs/benchmarks.md, and
README's figures about the test suite are the ones measured there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import cli
from harness.registry import SOURCES, STRATEGIES, TARGETS

ROOT = Path(__file__).resolve().parents[2]
STRATEGY_DOC = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
BENCHMARKS = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
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


def benchmark_scripts() -> list[str]:
    """What a user runs from benchmarks/: shell scripts and Python files with a ``__main__`` (not
    the modules they share)."""
    return sorted(p.name for p in (ROOT / "benchmarks").iterdir()
                  if p.suffix == ".sh" or (p.suffix == ".py" and "__main__" in p.read_text(encoding="utf-8")))


def test_every_benchmark_script_has_a_command_in_benchmarks_md():
    scripts = benchmark_scripts()
    assert "bench_report.py" in scripts and "gpu_figures.sh" in scripts  # the scan found the scripts
    missing = [name for name in scripts if f"benchmarks/{name}" not in BENCHMARKS]
    assert not missing, f"benchmarks with no command in docs/benchmarks.md: {missing}"


def test_readme_states_the_test_suite_as_benchmarks_md_measured_it():
    """README's test-suite figures come from the one current row in docs/benchmarks.md, *Test suite*:
    a new measurement there that README does not follow (or a count README invents) fails here."""
    section = BENCHMARKS.split("\n## Test suite\n", 1)[1].split("\n## ", 1)[0]
    (row,) = [line for line in section.splitlines() if line.startswith("| default test run on a fresh clone")]
    passed, seconds = re.search(r"\*\*(\d+) passed, \d+ deselected in (\d+) s\*\*", row).groups()
    assert "docs/benchmarks.md#test-suite" in README
    assert set(re.findall(r"(\d[\d,]*) (?:tests|passed)\b", README)) <= {passed}
    assert set(re.findall(r"(\d+) s on a fresh clone", README)) <= {seconds}
    minutes = re.findall(r"about (\d+) minutes on 2 CPU cores", README)
    assert minutes and {int(m) for m in minutes} == {round(int(seconds) / 60)}, (minutes, seconds)
