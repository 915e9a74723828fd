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


def bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def torch_pins(command: str) -> dict[str, str]:
    return dict(re.findall(r"\b(torch|torchvision)==([\w.+]+)", command))


def test_readme_set_up_commands_agree_with_the_test_command_and_ci_on_torch():
    """README's test command is the line `.ci/run` runs; both set-up commands install the torch it
    pins (so the test command downloads no other build); the CPU one takes it from PyTorch's CPU
    index, never the CUDA build; the package itself pins no exact torch."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_line = ci.split("# --- the README's test command (keep the two in sync) ---\n", 1)[1].strip().splitlines()[0]
    blocks = bash_blocks(README)
    assert ci_line in blocks, "README's test command is not the line .ci/run runs"
    assert "download.pytorch.org" not in ci  # CI installs from the package registries only
    pins = torch_pins(ci_line)
    assert set(pins) == {"torch", "torchvision"}
    quickstart = [b for b in blocks if "harness run suites/quickstart.yaml" in b]
    cpu = [b for b in quickstart if "--index-url https://download.pytorch.org/whl/cpu" in b]
    assert len(quickstart) == 2 and len(cpu) == 1, quickstart
    for command in quickstart:
        assert torch_pins(command) == pins, command
        # torch first: installing the package first would fetch the default index's (CUDA) build
        assert command.index("torch==") < command.index("pip install -e")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'"torch>=[\d.]+"', pyproject) and not re.search(r'"torch\s*==', pyproject)


def minutes(figure: str) -> float:
    """``10 min 22 s`` → 10.37, ``140.0 min`` → 140.0."""
    m = re.fullmatch(r"([\d.]+) min(?: (\d+) s)?", figure.strip())
    assert m, figure
    return float(m.group(1)) + int(m.group(2) or 0) / 60


def benchmarks_row(prefix: str) -> str:
    (row,) = [line for line in BENCHMARKS.splitlines() if line.startswith(f"| {prefix}")]
    return row


# Each figure README states, beside the docs/benchmarks.md row that measured it: (README's phrase,
# its figure as group 1; the row's first cell starts with; the figure in that row, as group 1).
# README rounds to whole minutes; a new measurement there that README does not follow fails.
README_FIGURES = [
    (r"CPU, about (\d+) minutes on 2 cores", "full quickstart", r"\*\*(\d+ min \d+ s) wall"),
    (r"`suites/quickstart\.yaml` \|[^|\n]*\| CPU, ~(\d+) min", "full quickstart", r"\*\*(\d+ min \d+ s) wall"),
    (r"CPU, ≈ (\d+) min: the image pairs", "the whole suite, those two commands", r"\*\*≈ (\d+ min)\*\*"),
    (r"the image pairs on `--executor pool --workers 2` \((\d+) min\)", "image pairs (digits",
     r"\*\*(\d+ min) wall\*\*"),
    (r"the text pair in one process \((\d+) min\)", "text pair (WNUT-16", r"\*\*(\d+ min \d+ s) wall\*\*"),
    (r"CPU: (\d+) min of runs, ≈ \d+ min", "`suites/domain.yaml` full run", r"([\d.]+ min) of run time summed"),
    (r"CPU: \d+ min of runs, ≈ (\d+) min", "`suites/domain.yaml` full run", r"(\d+ min) wall"),
    (r"CPU: \d+ runs, (\d+) min of runs", "`suites/zoo.yaml` in full", r"(\d+ min) of runs summed"),
    (r"CPU, ≈ (\d+) min on `--executor pool --workers 2` \|\n\| `suites/vision", "the baseline: eight seeds",
     r"\*\*(\d+ min \d+ s) wall\*\*"),
]
# durations README states that are not measurements, and the test-suite figure, which
# test_readme_states_the_test_suite_as_benchmarks_md_measured_it checks
NOT_MEASURED = {"A suite file in 30 seconds"}
TEST_SUITE_FIGURE = re.compile(r"about \d+ minutes on 2 CPU cores")


def test_every_figure_readme_states_is_the_one_docs_benchmarks_md_measured():
    covered: list[tuple[int, int]] = []
    for phrase, row_prefix, measured in README_FIGURES:
        found = list(re.finditer(phrase, README))
        assert len(found) == 1, f"README states {phrase!r} {len(found)} times"
        stated = int(found[0].group(1))
        figure = re.search(measured, benchmarks_row(row_prefix))
        assert figure, f"docs/benchmarks.md's row '{row_prefix}…' has no {measured!r}"
        assert stated == round(minutes(figure.group(1))), (phrase, stated, figure.group(1))
        covered.append(found[0].span(1))
    gate = re.search(r"exact mode caught (\d+/\d+) planted bugs", README)
    assert gate and f"exact mode caught **{gate.group(1)}**" in benchmarks_row("12 planted bugs")
    assert re.search(r"2 of them re-run at eight seeds were caught by both gates", README)
    assert "**caught by both gates**" in benchmarks_row("two planted bugs at eight seeds")
    # and no other duration in README: one without a source here is a figure nothing checks
    for m in re.finditer(r"\d[\d.]*\s?(?:min|minutes?|s|seconds?|h|hours?)\b", README):
        context = README[max(0, m.start() - 30):m.end() + 30]
        if any(a <= m.start() < b for a, b in covered) or TEST_SUITE_FIGURE.search(context) \
                or any(n in context for n in NOT_MEASURED):
            continue
        raise AssertionError(f"README states {m.group(0)!r} ({context!r}) with no row of docs/benchmarks.md "
                             "behind it: add it to README_FIGURES, or link to docs/benchmarks.md instead")
