"""Every registered strategy, source and target is documented and listed: a new one that skips its
docs page or `harness ls` fails here. Every benchmark has its figures in docs/benchmarks.md, and
README's figures about the test suite are the ones measured there. Every module, path and name the
pages mention exists, and docs/architecture.md draws the layers tests/unit/test_layers.py defines."""

from __future__ import annotations

import ast
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


# --- code the docs name exists: a move or rename that leaves a page behind fails here -------------

HARNESS = ROOT / "harness"
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = {p.name for p in HARNESS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
FILE_MODULES = {p.stem for p in HARNESS.glob("*.py") if not p.name.startswith("_")}
# README's "adding a strategy" example names the module a reader would write
NEW_MODULE_EXAMPLES = {"harness/strategies/bitfit_like.py"}
ENTRY_POINT_GROUPS = {"harness.plugins"}  # dotted, but the name of a group plugins register in, not a module
# a path of the repository (`harness/…`, `tests/…`, `benchmarks/…`) or of the package (`run/loop.py`)
# (``executors/base.py:run_plan`` or ``tests/unit/test_x.py::test_y`` names a function in it, checked too)
PATH = re.compile(r"(?<![\w./-])((?:[A-Za-z_][\w-]*/)+[A-Za-z_][\w-]*\.(?:py|sh))\b(?:::?([A-Za-z_]\w*))?")
# a dotted name: `harness.run.loop.fit`, `targets.load.audit`, `search.choose`
DOTTED = re.compile(r"(?<![\w./-])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?![\w/-]|\.\w)")
FILE_SUFFIXES = {"py", "md", "yaml", "yml", "json", "png", "html", "csv", "txt", "sh", "parquet", "toml", "pt"}


def module_file(dotted: str) -> Path | None:
    """The source file of ``harness.<dotted>`` (a module or a package's ``__init__``), if there is one."""
    base = HARNESS.joinpath(*dotted.split(".")) if dotted else HARNESS
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def defined_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level (what ``module.name`` can mean)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def path_problem(path: str, name: str | None = None) -> str | None:
    """Why a path a page names (and the ``name`` after its colon) does not exist (``None``: it does).
    Paths under a harness package (``run/loop.py``) are read inside ``harness/``; others
    (``tests/…``, ``benchmarks/…``) at the root."""
    first = path.split("/", 1)[0]
    if first in PACKAGES:
        path = f"harness/{path}"
    elif first not in {"harness", "tests", "benchmarks"}:
        return None  # not code of this repository (a dataset's file, a user's script)
    if path in NEW_MODULE_EXAMPLES:
        return None
    if not (ROOT / path).exists():
        return f"{path} does not exist"
    if name and path.endswith(".py") and name not in defined_names(ROOT / path):
        return f"{path}:{name}: {path} has no {name!r}"
    return None


def dotted_problem(name: str) -> str | None:
    """Why a dotted name a page uses names no code (``None``: it does, or it is not a code name).

    ``harness.a.b.c`` is always code. Without the prefix, a name counts as code when it starts with a
    package of harness (``targets.load.audit``) or a top-level module (``search.choose``); the record's
    fields that share a module's name (``config.notes.precision``, ``metrics.val``) are not code
    unless their second part is a module (``config.load.x``)."""
    parts = name.split(".")
    if parts[-1] in FILE_SUFFIXES or name in ENTRY_POINT_GROUPS:
        return None
    prefixed = parts[0] == "harness"
    rest = parts[1:] if prefixed else parts
    if not rest:
        return None
    if not prefixed:
        if rest[0] == "metrics" or (rest[0] == "config" and module_file(".".join(rest[:2])) is None):
            return None  # a record's field
        if rest[0] not in PACKAGES | FILE_MODULES:
            return None
    # the longest prefix that is a module; the next part must be a name it defines
    for cut in range(len(rest), -1, -1):
        if (source := module_file(".".join(rest[:cut]))) is not None:
            break
    if cut == len(rest):
        return None
    if rest[cut] not in defined_names(source):
        where = ".".join(["harness", *rest[:cut]])
        return f"{name}: {where} has no {rest[cut]!r}"
    return None


def stale_references(text: str) -> list[str]:
    found = [p for m in PATH.finditer(text) if (p := path_problem(m.group(1), m.group(2)))]
    return found + [p for m in DOTTED.finditer(text) if (p := dotted_problem(m.group(1)))]


def test_the_reference_check_sees_moved_and_renamed_code():
    old = ("`targets.base.load_target` → `audit`; `config/errors.py`; `harness/run/rank.py`; "
           "`strategies.base.RunContext`; `cli.quiet_libraries`; `harness.config.load._component`; "
           "`tests/unit/test_nothing.py`; `executors/base.py:execute_job`; `tests/unit/test_layers.py::test_gone`")
    assert len(stale_references(old)) == 9, stale_references(old)
    now = ("`targets.load.load_target` → `audit`; `harness/errors.py`; `run/transferability.py`; "
           "`run.context.RunContext`; `run/process.own_process`; `harness.config.components`; "
           "`harness.run.loop.LossTally`; `search.choose`; `tests/unit/test_layers.py`; `benchmarks/gpu_figures.sh`; "
           "`executors/base.py:run_plan`, `tests/unit/test_layers.py::test_no_import_cycles[x]`, `config.notes.precision` and `metrics.val` (a record's fields), `harness.plugins`")
    assert stale_references(now) == []


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_every_module_and_name_a_page_mentions_exists(page):
    stale = stale_references(page.read_text(encoding="utf-8"))
    assert not stale, f"{page.name} names code that is not there (moved or renamed?):\n" + "\n".join(stale)


def drawn_layers() -> list[tuple[str, str]]:
    """architecture.md's drawing of the layers, top to bottom: (layer name, the text listing its modules)."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = page.split("\n## Layers\n", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    layers: list[tuple[str, str]] = []
    for line in block.splitlines():
        if line[:1].strip():  # a layer's first line; its continuation lines are indented
            name, _, rest = line.partition(" ")
            layers.append((name, rest))
        elif layers:
            layers[-1] = (layers[-1][0], f"{layers[-1][1]} {line}")
    return layers


def test_architecture_draws_the_layers_test_layers_defines():
    """The drawing and tests/unit/test_layers.py's LAYERS name the same layers in the same order,
    and each module of harness/ is listed in the layer it belongs to (a strategy's own module is
    "one module per strategy")."""
    from tests.unit.test_layers import LAYERS, MODULES, layer_of

    drawn = drawn_layers()
    assert [name for name, _ in drawn] == [name for name, _ in reversed(LAYERS)]
    text = dict(drawn)
    assert "one module per strategy" in text["strategies"]
    strategy_modules = {f"harness.strategies.{e.name}" for e in STRATEGIES.entries()}
    misplaced = []
    for module in MODULES:
        if module == "harness" or module in strategy_modules:
            continue
        last = module.rpartition(".")[2]
        listed = text[LAYERS[layer_of(module)][0]]
        if not re.search(rf"(?<![\w.]){re.escape(last)}(?![\w])", listed):
            misplaced.append(f"{module} (layer {LAYERS[layer_of(module)][0]})")
    assert not misplaced, "modules architecture.md's layer drawing does not list in their layer:\n" + "\n".join(misplaced)


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
    (r"CPU, ≈ (\d+) min with its grid extensions and budget checks: the image pairs",
     "the whole suite, those two commands", r"\*\*(\d+ min) wall\*\*"),
    (r"the image pairs on `--executor pool --workers 2` \((\d+) min\)", "image pairs (digits",
     r"\*\*(\d+ min \d+ s) wall\*\*"),
    (r"the text pair in one process \((\d+) min\)", "text pair (WNUT-16", r"\*\*(\d+ min \d+ s) wall\*\*"),
    (r"the whole suite \(192 runs, its 20 budget checks and grid extensions included\) (\d+) min",
     "`suites/domain.yaml`, the whole suite",
     r"\*\*(\d+ min) wall\*\*"),
    (r"CPU: \d+ runs, (\d+) min of runs", "`suites/zoo.yaml` in full", r"(\d+ min) of runs summed"),
    (r"min of runs, (\d+) min wall on `--executor pool", "`suites/zoo.yaml` in full", r"\*\*(\d+ min \d+ s) wall"),
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
    assert re.search(r"at eight seeds only 2 of the 12 were re-run, each caught by both gates", README)
    assert "**caught by both gates**" in benchmarks_row("two planted bugs at eight seeds")
    # and no other duration in README: one without a source here is a figure nothing checks
    for m in re.finditer(r"\d[\d.]*\s?(?:min|minutes?|s|seconds?|h|hours?)\b", README):
        context = README[max(0, m.start() - 30):m.end() + 30]
        if any(a <= m.start() < b for a, b in covered) or TEST_SUITE_FIGURE.search(context) \
                or any(n in context for n in NOT_MEASURED):
            continue
        raise AssertionError(f"README states {m.group(0)!r} ({context!r}) with no row of docs/benchmarks.md "
                             "behind it: add it to README_FIGURES, or link to docs/benchmarks.md instead")
