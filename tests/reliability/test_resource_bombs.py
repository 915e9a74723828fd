"""Suite files that are valid YAML (or nearly) but built to exhaust time or memory: alias
expansion, enormous scalars, non-finite floats, deep nesting, huge files, many documents, a
stream that never ends. Each gets exit 2 from a real ``python -m harness run`` process,
a message naming FILE:LINE, no traceback, nothing written, and stays under 2 s of CPU time and
300 MB of resident memory (measured on the child process: ``getrusage(RUSAGE_CHILDREN)`` in a
wrapper of its own, so neither the machine's load nor the test process counts).

Fixed cases cover each class; a hypothesis generator varies each bomb's size and where in the
suite it sits, and the test counts the cases it checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CPU_S, RSS_MB = 2.0, 300.0
BASE = ("suite: s\nseeds: [0]\npairs:\n  - id: p\n    source: {model: test/tiny_cnn}\n"
        "    target: {dataset: test/tiny_images, task: image-classification}\nstrategies: [scratch]\n")
WRAPPER = """
import json, resource, subprocess, sys
p = subprocess.run([sys.executable, "-m", "harness", "run", sys.argv[1], "--results", sys.argv[2]],
                   capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "err": p.stderr, "out": p.stdout, "cpu_s": u.ru_utime + u.ru_stime,
                  "rss_mb": u.ru_maxrss / 1024}))
"""


def validate(path: Path, tmp: Path) -> dict:
    results = tmp / "results"
    out = subprocess.run([sys.executable, "-c", WRAPPER, str(path), str(results)], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    got["written"] = results.exists() and any(results.iterdir())
    return got


def check(path: Path, tmp: Path, message: str) -> dict:
    got = validate(path, tmp)
    assert got["rc"] == 2, got
    assert "Traceback" not in got["err"], got["err"]
    first = got["err"].splitlines()[0].removeprefix("error: ")
    assert first.startswith(f"{path}:") and first[len(f"{path}:"):].split(":")[0].isdigit(), first  # FILE:LINE
    assert message in got["err"], got["err"][:500]
    assert got["cpu_s"] < CPU_S and got["rss_mb"] < RSS_MB, (got["cpu_s"], got["rss_mb"])
    assert not got["written"]
    return got


def alias_fanout(width: int, depth: int) -> str:
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
    return BASE + "\n".join(lines) + "\n"


def alias_into_huge(n: int, uses: int) -> str:
    return f"big: &b [{', '.join(['1'] * n)}]\n" + BASE + f"x: [{', '.join(['*b'] * uses)}]\n"


CASES = {
    "alias_fanout": (lambda: alias_fanout(10, 9), "YAML nodes once aliases are expanded"),
    "alias_into_huge": (lambda: alias_into_huge(200_000, 200), "more than 20,000 YAML nodes"),
    "huge_int": (lambda: BASE.replace("seeds: [0]", "seeds: [" + "9" * 5000 + "]"), "a number of 5,000 digits"),
    "long_string": (lambda: BASE.replace("suite: s", "description: " + "a" * 200_000 + "\nsuite: s"),
                    "a value of 200,000 characters"),
    "inf": (lambda: BASE + "defaults: {lr: .inf}\n", "'.inf' is not a finite number"),
    "nan": (lambda: BASE + "defaults: {lr: .nan}\n", "'.nan' is not a finite number"),
    "overflow": (lambda: BASE + "defaults: {warmup_ratio: 1e400}\n", "'1e400' is not a finite number"),
    "deep_lists": (lambda: BASE + "defaults: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels"),
    "deep_maps": (lambda: BASE + "defaults: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested more than 64 levels"),
    "huge_file": (lambda: BASE + "# " + "x" * (3 << 20) + "\n", "a suite file is at most 1 MiB"),
    "many_documents": (lambda: (BASE + "---\n") * 5000, "but found another document"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_kind_of_bomb_is_refused_within_bounds(name, tmp_path):
    make, message = CASES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(make())
    check(path, tmp_path, message)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_stream_that_never_ends_is_refused_without_reading_it(tmp_path):
    fifo = tmp_path / "suite.yaml"
    os.mkfifo(fifo)  # nobody ever writes: opening it for reading would block forever
    check(fifo, tmp_path, "not a regular file (a FIFO)")
    check(Path("/dev/stdin") if Path("/dev/stdin").exists() else fifo, tmp_path, "not a regular file")


@st.composite
def bombs(draw):
    kind = draw(st.sampled_from(["fanout", "huge_list", "int", "float", "nesting", "size"]))
    if kind == "fanout":
        return kind, alias_fanout(draw(st.integers(8, 30)), draw(st.integers(6, 9))), "YAML nodes"
    if kind == "huge_list":
        return kind, alias_into_huge(draw(st.integers(21_000, 150_000)), draw(st.integers(1, 50))), "YAML nodes"
    if kind == "int":
        digits = draw(st.integers(101, 20_000))
        key = draw(st.sampled_from(["epochs", "batch_size", "max_steps", "seed_value"]))
        return kind, BASE + f"defaults: {{{key}: {'7' * digits}}}\n", f"a number of {digits:,} digits"
    if kind == "float":
        value = draw(st.sampled_from([".inf", "-.inf", ".NaN", "1e999", "-2.5e400", "+.Inf"]))
        key = draw(st.sampled_from(["lr", "weight_decay", "warmup_ratio", "max_grad_norm"]))
        return kind, BASE + f"defaults: {{{key}: {value}}}\n", "is not a finite number"
    if kind == "nesting":
        depth = draw(st.integers(65, 20_000))
        open_, close = draw(st.sampled_from([("[", "]"), ("{k: ", "}")]))
        return kind, BASE + "defaults: " + open_ * depth + ("1" if open_ != "[" else "") + close * depth + "\n", \
            "nested"
    size = draw(st.integers((1 << 20) + 1, 8 << 20))
    return kind, BASE + "# " + "y" * (size - len(BASE)) + "\n", "at most 1 MiB"


def test_generated_bombs_are_refused_within_bounds(tmp_path):
    checked: list[str] = []

    @settings(max_examples=24, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=bombs())
    def one(case):
        kind, text, message = case
        path = tmp_path / f"{kind}.yaml"
        path.write_text(text)
        check(path, tmp_path, message)
        checked.append(kind)

    one()
    # a count of what was checked, not of what was drawn: every kind reached the assertions
    assert len(checked) >= 24 and set(checked) == {"fanout", "huge_list", "int", "float", "nesting", "size"}, checked
