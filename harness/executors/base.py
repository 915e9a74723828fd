"""The seam between the driver and the executors.

The **driver** (:func:`run_plan`) owns everything about the results directory and the plan graph:
the lock, resuming (an ok record is never run again), the dependency order (a search's final after
its trials, a student after its teacher), resolving a final from its trials' records, failing the
dependants of a failed run with a record that says why, and writing every record. An **executor**
only turns jobs — resolved RunSpecs with the resolved runs they read — into RunRecords and hands
them back as they finish; how many run at once is its business.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.config.schema import PLACEMENT_KEYS
from harness.executors.job import Job
from harness.executors.local import LocalExecutor
from harness.plan import RunSpec, closure, config_hash
from harness.records import RunRecord, latest, now, results_lock, scan, sweep_temp, write_record
from harness.run.options import ExecOptions
from harness.run.progress import Progress
from harness.search import choose, edge_point, next_point, trial_score


class Executor(Protocol):
    """Turns jobs into records. ``slots``: how many jobs it takes before one must finish."""

    slots: int

    def submit(self, job: Job) -> None: ...

    def next_finished(self) -> RunRecord:
        """Block until a submitted job finishes; its record."""
        ...

    def close(self) -> None:
        """Release the workers; a job still in flight (Ctrl-C, an error in the driver) is
        cancelled at once and gets no record."""
        ...


@dataclass
class Outcome:
    done: list[RunRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def select(runs: Sequence[RunSpec], only: str | None) -> list[RunSpec]:
    """Runs whose run_id (or ``pair/label``) matches the glob ``only``, with every run they depend on."""
    if not only:
        return list(runs)
    chosen = [r for r in runs if fnmatch.fnmatch(r.run_id, only) or fnmatch.fnmatch(f"{r.pair}/{r.label}", only)
              or fnmatch.fnmatch(r.run_id, f"*{only}*")]
    return closure(list(runs), chosen)


def failed_record(spec: RunSpec, message: str, kind: str = "DependencyFailed") -> RunRecord:
    """The record of a run that could not start (a failed dependency, a search with no usable trial)."""
    stamp = now()
    return RunRecord(run_id=spec.run_id, suite=spec.suite, pair=spec.pair, strategy=spec.strategy, label=spec.label,
                     seed=spec.seed, smoke=spec.smoke, role=spec.role, status="failed",
                     error={"type": kind, "message": message[:2000]}, task=spec.target.get("task"),
                     config={**spec.config(), "notes": {}}, started_at=stamp, finished_at=stamp)


class Graph:
    """The plan's nodes and what is known of them: records (from disk and from this session) and
    the resolved spec of every run that finished."""

    def __init__(self, plan: Sequence[RunSpec], records: dict[str, RunRecord],
                 computed: Sequence[RunRecord] = ()):
        self.nodes = {r.run_id: r for r in plan}
        self.records = records
        self.summaries: dict[str, dict] = {}  # a final's search summary, added to its record
        # every ok record by what it computed: a run whose computation is already on record (the
        # final of a changed grid that picks a point it ran before, a renamed cell, a final chosen
        # again after a retried trial) reuses it
        self.computed: dict[str, RunRecord] = {}
        for r in [*records.values(), *computed]:
            self.remember(r)

    def remember(self, record: RunRecord) -> None:
        if record.status == "ok":
            self.computed.setdefault(computed_key(record), record)

    def trials_of(self, spec: RunSpec) -> list[RunSpec]:
        return [self.nodes[d] for d in spec.depends_on if d in self.nodes and self.nodes[d].role == "trial"
                and self.nodes[d].label == spec.label and self.nodes[d].pair == spec.pair]

    def concrete(self, run_id: str) -> RunSpec:
        """The resolved spec of a finished run (a final of a search: with its chosen point)."""
        node = self.nodes[run_id]
        if node.resolved:
            return node
        search = self.records[run_id].search or {}
        point = search.get("chosen") if node.role != "trial" else search.get("point")
        if point is None:
            raise ValueError(f"the record of {run_id} does not say which point it ran")
        return node.with_point(point)

    def prepare(self, spec: RunSpec) -> Job | RunRecord:
        """A job for ``spec``, or its record straight away: failed for a failed input, or taken over
        from the trial that already computed it."""
        broken = [d for d in spec.depends_on if d in self.nodes and self.nodes[d].role != "trial"
                  and self.records[d].status != "ok"]
        if broken:
            rec = self.records[broken[0]]
            return failed_record(spec, f"it reads {broken[0]}, which did not finish ok ({rec.status}: "
                                 f"{(rec.error or {}).get('message', '')[:300]})")
        inputs = {name: self.concrete(run_id) for name, run_id in spec.inputs.items()}
        if spec.resolved:
            return self.reuse(spec) or Job(spec, inputs)
        if spec.role == "trial" and spec.search.method == "grid":  # a slot past the grid's edge
            return self.edge_slot(spec, inputs)
        if spec.role == "trial":  # a sequential search: this point from the trials before it
            earlier = [self.nodes[d] for d in spec.depends_on if self.nodes[d].role == "trial"]
            history = [((self.records[t.run_id].search or {}).get("point"),
                        trial_score(self.records[t.run_id], spec.search.select_by)
                        if self.records[t.run_id].status == "ok" else None)
                       for t in earlier if t.seed == spec.seed]
            salt = f"{spec.suite}/{spec.pair}/{spec.label}"
            point = next_point(spec.search, spec.trial_index or 0, [h for h in history if h[0] is not None], salt)
            return Job(spec.with_point(point), inputs)
        try:
            choice = choose(spec.search, self.trials_of(spec), self.records)
        except ValueError as e:
            return failed_record(spec, f"search: {e}", "SearchFailed")
        resolved = spec.with_point(choice.point)
        self.summaries[spec.run_id] = choice.summary
        same = [t for t in self.trials_of(spec) if t.seed == spec.seed and self.records[t.run_id].status == "ok"
                and self.concrete(t.run_id).compute_key == resolved.compute_key]
        if same:  # the chosen point at a selection seed: that trial is this run
            trial = self.records[same[0].run_id]
            notes = {**trial.config.get("notes", {}), "reused_trial": trial.run_id}
            return trial.model_copy(update={"recorded_at": now("microseconds"),
                "run_id": spec.run_id, "role": spec.role, "search": choice.summary,
                "config": {**resolved.config(), "notes": notes}})
        return self.reuse(resolved) or Job(resolved, inputs)

    def edge_slot(self, spec: RunSpec, inputs: dict[str, RunSpec]) -> Job | RunRecord:
        """A grid's extension slot (``extend_edges``): one step past the edge the best point so far
        sits at (:func:`harness.search.edge_point`, over every earlier point's score under the
        search's ``select_by`` averaged across the selection seeds); the best point itself when it sits at no edge, whose
        record is then reused rather than trained again."""
        by_index: dict[int, list[RunRecord]] = {}
        for d in spec.depends_on:
            node = self.nodes.get(d)
            if node is not None and node.role == "trial" and node.label == spec.label and node.pair == spec.pair \
                    and (node.trial_index or 0) < (spec.trial_index or 0):
                by_index.setdefault(node.trial_index or 0, []).append(self.records[d])
        earlier = []
        for _, recs in sorted(by_index.items()):
            scores = [trial_score(r, spec.search.select_by) if r.status == "ok" else None for r in recs]
            point = self.concrete(recs[0].run_id).point if recs[0].status == "ok" else None
            ok = all(x is not None for x in scores)
            earlier.append((point, sum(scores) / len(scores) if ok else None))  # type: ignore[arg-type]
        try:
            point = edge_point(spec.search, earlier)
        except ValueError as e:
            return failed_record(spec, f"search: {e}", "SearchFailed")
        resolved = spec.with_point(point)
        return self.reuse(resolved) or Job(resolved, inputs)

    def reuse(self, spec: RunSpec) -> RunRecord | None:
        """The record of a run that computed exactly what ``spec`` computes, as ``spec``'s record."""
        found = self.computed.get(spec.compute_key)
        if found is None:
            return None
        notes = dict(found.config.get("notes", {}))
        if found.run_id != spec.run_id:  # else: this run's own record, chosen again
            notes["reused_run"] = found.run_id
        search = self.summaries.get(spec.run_id) if spec.role != "trial" else \
            ({"point": spec.point, "index": spec.trial_index} if spec.search is not None else None)
        return found.model_copy(update={"recorded_at": now("microseconds"), "run_id": spec.run_id, "label": spec.label, "role": spec.role,
                                        "search": search, "config": {**spec.config(), "notes": notes}})

    def finish(self, record: RunRecord) -> RunRecord:
        if record.run_id in self.summaries and record.role != "trial":
            record = record.model_copy(update={"search": self.summaries[record.run_id]})
        self.records[record.run_id] = record
        self.remember(record)
        return record


def computed_key(record: RunRecord) -> str:
    """What a record's run computed: its config without the annotations (notes, search, placement),
    hashed as :attr:`RunSpec.compute_key` hashes a spec. A record written before placement was
    split off (device etc. among its train settings) gets the key it would get today."""
    cfg = {k: v for k, v in record.config.items() if k not in ("notes", "search", "placement")}
    if isinstance(cfg.get("train"), dict):
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in PLACEMENT_KEYS}
    return config_hash(cfg)


def latest_records(directory: Path) -> dict[str, RunRecord]:
    """Every record in ``directory`` by run_id (the latest when one was written twice)."""
    return latest(scan(directory)[0]) if directory.exists() else {}


def to_run(runs: Sequence[RunSpec], existing: dict[str, RunRecord], retry_failed: bool) -> list[RunSpec]:
    """Which runs of the plan to execute, in plan order.

    A plain run: every run without an ok record — except a failed trial whose dependants all
    have ok records (a point that diverged is a scored failure of its search, not a run to repeat
    on every resume). ``retry_failed``: the runs whose record is not ok, everything that depends on
    them (a final is chosen again once a failed trial has another try; it reuses its old computation
    when the choice stands), and whatever those need that has no record yet.
    """
    ok = {i for i, r in existing.items() if r.status == "ok"}
    dependants: dict[str, list[str]] = {}
    for r in runs:
        for d in r.depends_on:
            dependants.setdefault(d, []).append(r.run_id)
    if not retry_failed:
        return [r for r in runs if r.run_id not in ok and not (
            r.role == "trial" and r.run_id in existing and dependants.get(r.run_id)
            and all(d in ok for d in dependants[r.run_id]))]
    chosen = {i for i, r in existing.items() if r.status != "ok"}
    for r in runs:  # plan order: dependencies come first
        if chosen.intersection(r.depends_on):
            chosen.add(r.run_id)
    by_id = {r.run_id: r for r in runs}
    stack = [d for i in list(chosen) if i in by_id for d in by_id[i].depends_on]
    while stack:  # their dependencies that never ran
        d = stack.pop()
        if d in by_id and d not in existing and d not in chosen:
            chosen.add(d)
            stack += list(by_id[d].depends_on)
    return [r for r in runs if r.run_id in chosen]


def critical_first(runs: Sequence[RunSpec]) -> list[RunSpec]:
    """``runs`` by the length of the longest chain of runs that wait on each (longest first), then
    in plan order: list scheduling by critical path. A teacher whose students then search, or a
    search's trials, start before finals nothing waits on, so the slots are not left idle at the end
    waiting on a chain that started late."""
    index = {r.run_id: i for i, r in enumerate(runs)}
    height = dict.fromkeys(index, 1)
    changed = True
    while changed:  # one pass when dependencies come first in the plan, as they do
        changed = False
        for r in reversed(runs):
            for d in r.depends_on:
                if d in height and height[d] < height[r.run_id] + 1:
                    height[d], changed = height[r.run_id] + 1, True
    return sorted(runs, key=lambda r: (-height[r.run_id], index[r.run_id]))


def run_plan(runs: Sequence[RunSpec], directory: Path, options: ExecOptions, executor: Executor | None = None,
             retry_failed: bool = False, wait: bool = False,
             on_record: Callable[[RunRecord], None] | None = None, progress: Progress | None = None) -> Outcome:
    """Execute ``runs`` (a plan, closed over its dependencies) not yet ok in ``directory``, in
    dependency order, on ``executor`` (default: in this process); with ``retry_failed``, only the
    failed ones and the runs that wait on them. ``progress``: what is said while it runs (default:
    the bar of runs when ``options.show_progress``, no lines)."""
    executor = executor or LocalExecutor(options)
    progress = progress or Progress(bars=options.show_progress)
    outcome = Outcome()
    with results_lock(directory, wait=wait):
        sweep_temp(directory)  # a killed writer's half file; we hold the lock, so no live writer owns it
        existing = latest_records(directory)
        ok = {i for i, r in existing.items() if r.status == "ok"}
        todo = to_run(runs, existing, retry_failed)
        chosen = {r.run_id for r in todo}
        outcome.skipped = [r.run_id for r in runs if r.run_id in ok and r.run_id not in chosen]
        graph = Graph(runs, {i: r for i, r in existing.items() if i in ok and i not in chosen},
                      computed=[r for r in existing.values() if r.status == "ok"])
        if any(r.resolved and r.train.get("deterministic") for r in todo):
            # cuBLAS reads this once, when it first starts in the process: set it before any run does.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        progress.begin(len(runs), len(outcome.skipped), len(todo), directory)
        # one slot: plan order, as the user reads it; several: the runs that others wait on first
        pending = list(todo) if executor.slots == 1 else critical_first(todo)
        running = 0

        def emit(record: RunRecord, ran: bool = False) -> None:
            record = graph.finish(record)
            write_record(directory, record)
            outcome.done.append(record)
            progress.finished(record, ran)
            if on_record:
                on_record(record)

        try:
            while pending or running:
                progressed = True
                while progressed and running < executor.slots:
                    progressed = False
                    for spec in pending:
                        if all(d in graph.records for d in spec.depends_on):
                            pending.remove(spec)
                            work = graph.prepare(spec)
                            if isinstance(work, RunRecord):
                                emit(work)
                            else:
                                executor.submit(work)
                                running += 1
                                progress.started(work.spec)
                            progressed = True
                            break
                if running:
                    running -= 1
                    emit(executor.next_finished(), ran=True)
                elif pending:  # waiting on runs outside this plan: nothing can start
                    for spec in pending:
                        missing = [d for d in spec.depends_on if d not in graph.records]
                        emit(failed_record(spec, f"it depends on {', '.join(missing[:3])}, which has no record and "
                                           "is not part of this run (see `harness plan`)"))
                    pending = []
        finally:
            executor.close()
            progress.close()
    return outcome

