"""Naming things costs no deep-learning import: the registries, ``validate``, ``plan`` and the first
line of ``harness run`` load no torch (nor transformers, timm, sklearn, pandas …), so a logged run
says its plan in well under a second instead of after torch's 2–3 s import. The networks live in
each package's ``nets`` module, which the registry walk leaves out.

Each check runs in a fresh interpreter with an import hook that refuses the heavy libraries, so
one ``import torch`` added at the top of any strategy, source, target or metric module fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.registry import NOT_WALKED
from tests.conftest import TINY_SUITE

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "transformers", "timm", "sklearn", "pandas", "scipy", "matplotlib",
         "pyarrow", "tokenizers", "safetensors", "seqeval", "PIL")

# installed by every snippet below: a heavy import raises (``refuse``) or is noted on stderr (``note``)
HOOK = textwrap.dedent(f"""
    import sys
    HEAVY = {HEAVY!r}
    class Hook:
        def __init__(self, refuse):
            self.refuse, self.seen = refuse, False
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                if self.refuse:
                    raise ImportError(f"refused: {{name}}")
                if not self.seen:
                    self.seen = True
                    print(f"HEAVY-IMPORT {{name}}", file=sys.stderr, flush=True)
            return None
""")


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HOOK + textwrap.dedent(code), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_every_registry_fills_without_a_heavy_import():
    out = python("""
        sys.meta_path.insert(0, Hook(refuse=True))
        from harness.registry import METRICS, SOURCES, STRATEGIES, TARGETS, TASKS
        print(len(STRATEGIES.names()), len(SOURCES.names()), len(TARGETS.names()), len(METRICS.names()),
              len(TASKS.names()))
        print(sorted(m for m in sys.modules if m.endswith(".nets")))
    """)
    assert out.returncode == 0, out.stderr
    counts, nets = out.stdout.splitlines()
    strategies, sources, targets, metrics, tasks = map(int, counts.split())
    assert strategies >= 18 and sources >= 5 and targets >= 3 and metrics >= 2 and tasks >= 2, counts
    assert nets == "[]"  # the walk leaves the networks out


def test_network_classes_live_only_in_modules_the_walk_leaves_out():
    """A torch class (``nn.Module``, ``autograd.Function`` …) defined in a walked module would
    import torch to name a strategy; the ones that exist are all in a ``nets`` module."""
    homes = set()
    for path in sorted((ROOT / "harness").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and any(
                    ast.unparse(b).split(".")[0] in {"nn", "torch"} for b in node.bases):
                homes.add(path.relative_to(ROOT).as_posix())
    assert homes == {"harness/sources/nets.py", "harness/strategies/nets.py"}
    assert {"nets"} == NOT_WALKED


def offline_suites() -> list[str]:
    """The suites whose sources ship with the harness (``packaged/``, ``test/``). A ``torchvision/``
    or ``hf/`` model name is checked by asking that library, which imports torch."""
    paths = sorted((ROOT / "suites").glob("*.yaml"))
    return [str(p) for p in paths if not any(ns in p.read_text() for ns in ("model: torchvision/", "model: hf/"))]


def test_validate_and_plan_of_every_offline_suite_import_nothing_heavy():
    suites = offline_suites()
    assert len(suites) >= 5  # quickstart, strategies, domain, zoo, nightly
    out = python("""
        sys.meta_path.insert(0, Hook(refuse=True))
        from harness.cli import main
        for path in sys.argv[1:]:
            assert main(["validate", path]) == 0, path
            assert main(["plan", path, "--smoke"]) == 0, path
        print("planned", len(sys.argv) - 1)
    """, *suites)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == f"planned {len(suites)}"


def test_a_run_says_its_plan_before_it_imports_torch(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(textwrap.dedent(TINY_SUITE).replace("seeds: [0, 1]", "seeds: [0]"))
    out = python("""
        sys.meta_path.insert(0, Hook(refuse=False))
        from harness.cli import main
        sys.exit(main(["run", sys.argv[1], "--results", sys.argv[2], "--only", "*scratch*"]))
    """, str(suite), str(tmp_path / "results"))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if "runs planned" in line or "run planned" in line)
    heavy = next(i for i, line in enumerate(lines) if line.startswith("HEAVY-IMPORT"))
    assert first < heavy, lines[:5]  # the plan is said first; torch comes with the first run
    assert any(line.startswith("[     ok]") for line in lines), lines
