"""What `harness run` says while it runs: the plan's first line before any run starts, a line
per run start and end in a log, the search trials told apart on the bars."""

from __future__ import annotations

import re

from harness.cli import main
from harness.plan import expand
from harness.run.progress import run_title
from harness.suite import load_suite
from tests.conftest import TINY_SUITE

SEARCH_SUITE = TINY_SUITE.replace("seeds: [0, 1]", "seeds: [0]").replace(
    "  - full_finetune: {lr: 3e-3}", "  - full_finetune: {search: {lr: [1e-3, 1e-2]}}")


def test_a_logged_run_says_its_plan_first_then_each_run_as_it_starts_and_ends(write_suite, tmp_path, capsys,
                                                                                 monkeypatch):
    import harness.run.execute as run_execute

    seen: list[str] = []  # stderr as it stood when each run began: the first line is there before any
    execute = run_execute.execute

    def spy(spec, options, inputs=None):
        seen.append(capsys.readouterr().err)
        return execute(spec, options, inputs)

    monkeypatch.setattr(run_execute, "execute", spy)  # what every executor's job calls, looked up per run
    suite = write_suite(SEARCH_SUITE)
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results)]) == 0  # stderr is no terminal here: a log
    err = "".join(seen) + capsys.readouterr().err
    lines = err.splitlines()
    # scratch, linear_probe, two trials, and the final (reused from its trial): 5 runs, none done
    assert lines[0] == f"harness: 5 runs planned (0 already done, 5 to run) → {results / 'tiny'}"
    assert len(seen) == 4 and seen[0].splitlines()[0] == lines[0]  # said before the first run started
    starts = [line for line in lines if line.startswith("[  start]")]
    ends = [line for line in lines if re.match(r"\[ +ok\] ", line)]
    assert len(starts) == 4 and len(ends) == 5  # the final is the trial at its point: ended, never started
    assert any(re.search(r"\.t1\.s0-\w+  cnn-images/full_finetune/s0 trial 2/2 lr=0\.01$", s) for s in starts), starts
    assert all(re.search(r"  accuracy=\d\.\d{4}  \(\d+\.\ds\)$", e) for e in ends), ends
    assert "\r" not in err  # no bars in a log

    assert main(["run", str(suite), "--results", str(results)]) == 0
    err = capsys.readouterr().err
    assert f"harness: 5 runs planned (5 already done, 0 to run) → {results / 'tiny'}" in err
    assert "[  start]" not in err


def test_on_a_terminal_the_bars_name_each_trial_and_end_with_no_run_in_flight(write_suite, tmp_path, capsys,
                                                                                monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # capsys's stderr, taken for a terminal
    assert main(["run", str(write_suite(SEARCH_SUITE)), "--results", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    frames = re.split(r"[\r\n]", err)
    # each trial's bar of steps carries its number and the point it tries
    assert any(f.startswith("cnn-images/full_finetune/s0 trial 1/2 lr=0.001") for f in frames), frames
    assert any(f.startswith("cnn-images/full_finetune/s0 trial 2/2 lr=0.01") for f in frames)
    runs = [f for f in frames if f.startswith("runs:")]
    assert any("in flight" in f for f in runs)  # while a run was on
    assert [f for f in runs if "100%" in f] and not any("in flight" in f for f in runs if "100%" in f), runs


def test_run_titles_tell_trials_and_finals_apart(write_suite):
    runs = expand(load_suite(write_suite(SEARCH_SUITE.replace("[1e-3, 1e-2]", "[1e-3, 1e-2, 0.1]"))))
    titles = {run_title(r) for r in runs if r.role == "trial"}
    assert titles == {"cnn-images/full_finetune/s0 trial 1/3 lr=0.001", "cnn-images/full_finetune/s0 trial 2/3 lr=0.01",
                      "cnn-images/full_finetune/s0 trial 3/3 lr=0.1"}
    (final,) = [r for r in runs if r.role == "final" and r.label == "full_finetune"]
    assert run_title(final) == "cnn-images/full_finetune/s0"  # its point is chosen later
    assert run_title(final.with_point({"lr": 0.01})) == "cnn-images/full_finetune/s0 lr=0.01"
