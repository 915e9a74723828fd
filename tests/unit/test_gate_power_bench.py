"""benchmarks/bench_gate_power.py's arithmetic, without running a suite: what counts as a catch, an
alarm and an error. A gate that could not judge (exit 2, bad input) is neither a catch nor a pass,
and a pass with a warning is an alarm for every kind of rerun."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
PASS_LINE = "PASS: 0 regression(s) in 12 comparison(s)"
FLAGGED_LINE = PASS_LINE + "; WARNING: 1 significant improvement(s) nobody explained: review them"
FAIL_LINE = "FAIL: 2 regression(s) in 12 comparison(s)"
BAD_INPUT = "error: no records under results/nightly"


def bench():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("bench_gate_power")


def row(name: str, area: str, rc: int | None, line: str, exact_rc: int | None = 0, exact: str = PASS_LINE):
    return bench().Outcome(name, area, "", statistical_rc=rc, statistical=line, exact_rc=exact_rc, exact=exact)


def test_verdicts():
    verdict = bench().verdict
    assert verdict(1, FAIL_LINE) == "CAUGHT"
    assert verdict(0, PASS_LINE) == "pass"
    assert verdict(0, FLAGGED_LINE) == "FLAGGED"
    assert verdict(2, BAD_INPUT) == "error (exit 2)"  # the gate could not judge: not a catch
    assert verdict(None) == "no records"


def test_a_gate_that_errs_catches_nothing_and_a_warning_is_no_catch():
    counts = bench().tally([
        row("bug-a", "optimizer", 1, FAIL_LINE, exact_rc=1, exact=FAIL_LINE),
        row("bug-b", "metric computation", 2, BAD_INPUT, exact_rc=2, exact=BAD_INPUT),
        row("bug-c", "seeding", 0, FLAGGED_LINE, exact_rc=1, exact=FAIL_LINE),
        row("bug-d", "schedule", None, "", exact_rc=None, exact=""),
    ])
    stat, exact = counts[("planted", "statistical")], counts[("planted", "exact")]
    assert (stat.rows, stat.alarms, stat.flagged, stat.errors) == (4, 1, 1, 2)
    assert (exact.rows, exact.alarms, exact.flagged, exact.errors) == (4, 2, 0, 2)


def test_every_kind_of_rerun_counts_a_warning_as_an_alarm_and_an_error_apart():
    counts = bench().tally([
        row("clean-1", "clean rerun", 0, FLAGGED_LINE),
        row("clean-2", "clean rerun", 0, PASS_LINE),
        row("clean-3", "clean rerun", 2, BAD_INPUT),
        row("perturbed-1", "perturbed rerun", 0, FLAGGED_LINE),
        row("perturbed-2", "perturbed rerun", 1, FAIL_LINE),
        row("perturbed-3", "perturbed rerun", 0, PASS_LINE),
        row("given-1", "given records", 0, FLAGGED_LINE),
    ])
    for group, (rows, alarms, errors) in {"clean rerun": (3, 1, 1), "perturbed rerun": (3, 2, 0),
                                          "given records": (1, 1, 0)}.items():
        c = counts[(group, "statistical")]
        assert (c.rows, c.alarms, c.errors) == (rows, alarms, errors), group
        assert counts[(group, "exact")].alarms == 0  # its exact verdicts all passed silently
    assert counts[("perturbed rerun", "statistical")].flagged == 1


def test_the_summary_names_errors_apart_from_catches():
    lines = bench().summary(bench().tally([
        row("bug-a", "optimizer", 1, FAIL_LINE),
        row("bug-b", "metric computation", 2, BAD_INPUT),
        row("perturbed-1", "perturbed rerun", 0, FLAGGED_LINE),
    ]))
    assert lines[0].startswith("statistical: caught 1/2 planted bugs") and "1 error(s)" in lines[0]
    assert "statistical, perturbed rerun: false alarms 1/1 (1 of them a pass with a warning)" in lines


def test_every_planted_bug_still_patches_its_file_once():
    """A refactor that moves the code a bug patches would make the benchmark stop at that bug:
    each patch must match its file exactly once, and change it."""
    root = BENCH.parent
    for bug in bench().BUGS:
        text = (root / bug.file).read_text()
        assert text.count(bug.old) == 1, f"{bug.name}: {bug.old!r} occurs {text.count(bug.old)} times in {bug.file}"
        assert bug.new != bug.old, bug.name
