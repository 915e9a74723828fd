"""Re-baselining: run a suite afresh beside its baseline, show what moved, and replace the
baseline's records (with the per-example predictions beside them) only when every run is ok
(``harness baseline``)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.suite import load_suite

# runs the suite into (results root, cache dir) with the caller's execution options: its exit code
SuiteRunner = Callable[[Path, Path], int]


def rebaseline(suite_file: str | Path, baseline: Path, run_suite: SuiteRunner) -> int:
    """Run the suite afresh (its own empty cache) into a directory beside ``baseline``, print what
    moved against the old baseline, and only when every run is ok replace the baseline's records
    with the new ones (records say which commit and environment made them). Returns the exit code:
    0 replaced, 1 left as it was."""
    suite = load_suite(suite_file)
    baseline.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{baseline.name}.new-", dir=baseline.parent))
    try:
        rc = run_suite(work / "results", work / "cache")
        made = work / "results" / suite.suite
        records = sorted(made.glob("*.json"))
        if rc != 0 or not records:
            print(f"baseline not replaced: the run did not finish ok (exit {rc}); {baseline} is unchanged",
                  file=sys.stderr)
            return 1
        old = sorted(baseline.glob("*.json")) if baseline.is_dir() else []
        if old:
            print(f"\nwhat moves against the baseline being replaced ({len(old)} records):", flush=True)
            from harness.report.compare import GateOptions, compare_dirs, render_text

            print(render_text(compare_dirs(baseline, made, GateOptions(max_slowdown=None), suite=suite.suite), "off"),
                  end="")
        fresh = work / "baseline"
        fresh.mkdir()
        kept = 0
        for r in records:
            shutil.copy2(r, fresh / r.name)
            kept += copy_predictions(r, fresh)
        if baseline.exists():
            baseline.rename(work / "retired")
        fresh.rename(baseline)
        print(f"baseline replaced: {len(records)} records of suite {suite.suite} in {baseline} (was {len(old)}), "
              f"{kept} with their per-example predictions; commit them with the change that moved them")
        warn_if_uncommitted(records)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def copy_predictions(record: Path, into: Path) -> int:
    """Copy the per-example predictions file ``record`` names (beside it) into ``into``, so that
    `harness rescore` and the report's bootstrap work on the baseline too; 1 if copied, 0 if the
    record names none (a failed run) or it is missing."""
    ref = json.loads(record.read_text()).get("predictions") or {}
    name = ref.get("file")
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        return 0
    source = record.parent / name
    if not source.is_file():
        return 0
    shutil.copy2(source, into / name)
    return 1


def warn_if_uncommitted(records: list[Path]) -> None:
    """A baseline made from uncommitted code cannot be reproduced by any commit: say so."""
    shas = {str((json.loads(r.read_text()).get("env") or {}).get("git_sha")) for r in records}
    if any(sha.endswith("-dirty") or sha == "None" for sha in shas):
        print("warning: made from uncommitted code (git_sha " + ", ".join(sorted(shas)) + "): no commit can "
              "reproduce it; the nightly workflow's bit-for-bit check runs the baseline's commit, so commit "
              "first and re-baseline from the clean tree", file=sys.stderr)
