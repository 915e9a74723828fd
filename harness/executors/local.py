"""Run a plan in this process, one run after another, writing each record as it finishes."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from harness.plan import RunSpec
from harness.records import RunRecord, completed_ids, results_lock, scan, sweep_temp, write_record
from harness.run.execute import ExecOptions, execute


@dataclass
class Outcome:
    done: list[RunRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def select(runs: Sequence[RunSpec], only: str | None) -> list[RunSpec]:
    """Runs whose run_id (or ``pair/label``) matches the glob ``only``."""
    if not only:
        return list(runs)
    return [r for r in runs if fnmatch.fnmatch(r.run_id, only) or fnmatch.fnmatch(f"{r.pair}/{r.label}", only)
            or fnmatch.fnmatch(r.run_id, f"*{only}*")]


def run_plan(runs: Sequence[RunSpec], directory: Path, options: ExecOptions, retry_failed: bool = False,
             wait: bool = False, on_record: Callable[[RunRecord], None] | None = None) -> Outcome:
    """Execute ``runs`` not yet ok in ``directory``; with ``retry_failed`` only the failed ones."""
    outcome = Outcome()
    with results_lock(directory, wait=wait):
        sweep_temp(directory)  # a killed writer's half file; we hold the lock, so no live writer owns it
        ok = completed_ids(directory)
        if retry_failed:
            records, _ = scan(directory)
            failed = {r.run_id for r in records if r.status != "ok"}
            todo = [r for r in runs if r.run_id in failed and r.run_id not in ok]
        else:
            todo = [r for r in runs if r.run_id not in ok]
        outcome.skipped = [r.run_id for r in runs if r.run_id in ok]
        if any(r.train.get("deterministic") for r in todo):
            # cuBLAS reads this once, when it first starts in the process: set it before any run does.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        bar = tqdm(total=len(todo), desc="runs", position=0, disable=not options.show_progress, dynamic_ncols=True)
        for spec in todo:
            bar.set_postfix_str(spec.run_id)
            record = execute(spec, options)
            write_record(directory, record)
            outcome.done.append(record)
            if on_record:
                on_record(record)
            bar.update(1)
        bar.close()
    return outcome
