"""What the screen (or the log) says while a plan runs.

A first line as soon as the plan is known — how many runs, how many already have an ok record,
where the records go — then a line as each run starts and as it ends. On a terminal the lines are
written above the bars (the plan's bar of runs, and each run's bar of steps, labelled by
:func:`run_title`); in a log, where bars would be noise, the lines are all there is, so a job
redirected to a file (CI, ``nohup``) says what it is doing from its first second.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from harness.plan import RunSpec
from harness.records import RunRecord
from harness.search import point_text


def run_title(spec: RunSpec) -> str:
    """A run as a person tells it apart from its neighbours: ``digits/full_finetune/s0 trial 2/3
    lr=0.001`` (a search's trials differ only by their index and point; a final shows its chosen point)."""
    title = f"{spec.pair}/{spec.label}/s{spec.seed}"
    if spec.role == "trial" and spec.search is not None and spec.trial_index is not None:
        title += f" trial {spec.trial_index + 1}/{spec.search.n_points()}"
    if spec.point:
        title += f" {point_text(spec.point)}"
    if spec.role == "aux":
        title += f" (budget check, {spec.budget_check}× epochs)" if spec.budget_check else " (aux)"
    return title


def record_line(record: RunRecord) -> str:
    """A finished run in one line: status, run id, headline metric (or the error), wall time."""
    m = record.metrics.get(record.primary_metric) if record.primary_metric else None
    shown = f"{record.primary_metric}={m:.4f}" if isinstance(m, float) else (record.error or {}).get("message", "")[:120]
    return f"[{record.status:>7}] {record.run_id}  {shown}  ({record.cost.get('wall_s', 0):.1f}s)"


class Progress:
    """The driver's voice: the plan's first line, a line per run start and end (``lines``), and
    the bar of runs (``bars``, on a terminal). Lines go to ``stream`` (default: stderr, beside the
    bars) through :func:`tqdm.write`, which keeps them above any bar on the screen."""

    def __init__(self, bars: bool = False, lines: bool = False, stream: TextIO | None = None):
        self.bars, self.lines = bars, lines
        self.stream = stream if stream is not None else sys.stderr
        self.in_flight, self.last = 0, ""
        self.bar: Any = None

    def say(self, text: str) -> None:
        if self.lines:
            tqdm.write(text, file=self.stream)
            self.stream.flush()  # a log file is block-buffered: a line that waits is no line at all

    def begin(self, planned: int, done: int, to_run: int, directory: Path) -> None:
        """The plan is known, nothing has started: say so, and start the bar of runs."""
        self.say(f"harness: {planned} run{'s' if planned != 1 else ''} planned ({done} already done, "
                 f"{to_run} to run) → {directory}")
        self.bar = tqdm(total=to_run, desc="runs", position=0, disable=not self.bars, dynamic_ncols=True)

    def started(self, spec: RunSpec) -> None:
        """A run was handed to the executor."""
        self.in_flight += 1
        self.last = run_title(spec)
        self.say(f"[  start] {spec.run_id}  {self.last}")
        self._postfix(refresh=True)

    def finished(self, record: RunRecord, ran: bool) -> None:
        """A record was written; ``ran``: it came from the executor (else the driver made it: a
        failed dependency, a reused computation), so it was never in flight."""
        if ran:
            self.in_flight -= 1
        self.say(record_line(record))
        self._postfix(refresh=False)  # the count first: the redraw at 100 % shows no run in flight
        if self.bar is not None:
            self.bar.update(1)

    def _postfix(self, refresh: bool) -> None:
        if self.bar is not None:
            text = f"{self.in_flight} in flight, last started {self.last}" if self.in_flight else ""
            self.bar.set_postfix_str(text, refresh=refresh)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
