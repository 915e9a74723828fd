"""Records → one row per (suite, pair, strategy label): metric summaries, gains, ranks, cost. Pure.

Only the finals of a plan enter (search trials and aux teachers do not). Records of one pair made
on different examples (another split, subset or evaluation set: another data fingerprint) are
never pooled: each fingerprint gets rows of its own, marked as a *data variant* of the pair.

Per pair, each row also gets its rank by the primary metric, whether it is statistically
tied with the best row (see :func:`harness.report.stats.difference`), its seed-paired gain
over ``scratch`` and over ``linear_probe``, whether it is Pareto-optimal on (primary metric,
mean wall seconds per run), whether its validation metric was still rising at its last evaluation
(:func:`convergence`), and whether its budget differs from the pair's reference budget.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.plan import BUDGET_KEYS
from harness.records import RecordSummary, latest
from harness.report.machines import Busy, busy, describe
from harness.report.stats import EMPTY, Difference, Summary, difference, paired_gain, pareto_front, summarize

SCALAR_METRICS = ("accuracy", "macro_f1", "f1", "precision", "recall")
COST_KEYS = ("wall_s", "train_s", "eval_s", "feature_s", "samples_per_s", "peak_rss_mb", "peak_gpu_mem_mb",
             "peak_gpu_reserved_mb", "train_flops", "energy_j", "gpu_hours", "price")
GAIN_BASELINES = ("scratch", "linear_probe")  # strategies every other one is compared with
REUSED_PHASE = {"feature_s": "feature", "train_s": "fit"}  # cost column -> the cached work it includes
PARETO_COST = "wall_s"  # the x axis of the Pareto front: measured for every run, on any hardware


RISE_FLOOR = 0.001  # a rise of at most 0.1 point never marks a cell as still rising


@dataclass(frozen=True)
class Convergence:
    """How a cell's validation metric moved at its last evaluation, over seeds."""

    rise: float  # mean over seeds of (last − previous) validation primary metric
    spread: float  # sample std over seeds of the last validation metric (0 for one seed)
    seeds: int

    @property
    def converged(self) -> bool:
        """Not still rising by more than the seeds disagree (a cell rising by less than its
        spread has reached what its budget can tell apart), nor by more than 0.1 point (below
        that, a rise is the last digit of a small validation set)."""
        return not self.rise > max(self.spread, RISE_FLOOR)


@dataclass(frozen=True)
class Adequacy:
    """A cell's budget check (``budget_check: true``): its first seed trained again at ``factor`` ×
    its epochs, against the final of that seed, on the validation split."""

    factor: int
    limit: str  # the budget the cell ranks at, as the suite set it ("epochs 3")
    raw_gain: float | None  # check − final, validation primary metric, from the records
    gain: Difference | None = None  # the same, paired by validation example (bootstrap); None: no predictions

    @property
    def adequate(self) -> bool | None:
        """The extra budget gains less than the noise: its paired interval does not lie above 0.
        None when the noise could not be measured (no kept validation predictions)."""
        if self.gain is None or self.gain.interval is None:
            return None
        return not (self.gain.significant and self.gain.mean > 0)

    @property
    def degrades(self) -> bool:
        """The extra budget *loses* more than the noise: its paired interval lies below 0, so the
        cell's score depends on stopping at its budget."""
        return self.adequate is True and self.gain.significant and self.gain.mean < 0


CI_FALLBACK = "t-fallback"  # Row.ci of a cell the bootstrap was asked for that kept no usable predictions


@dataclass
class Row:
    suite: str
    pair: str
    label: str
    strategy: str
    task: str | None
    primary: str | None
    smoke: bool
    variant: str | None = None  # the data fingerprint, when the pair's records hold several
    superseded: int = 0  # finals of this cell and seed left out for a later one (an edited suite)
    collapsed: list[int] = field(default_factory=list)  # seeds whose test predictions use one label only
    suite_runs: int = 0  # computations behind the suite's report (trials and teachers too)
    suite_run_s: float = 0.0  # their run time summed (not the wall clock of a pool)
    n_ok: int = 0
    n_failed: int = 0
    failures: list[str] = field(default_factory=list)
    metrics: dict[str, Summary] = field(default_factory=dict)
    by_seed: dict[str, dict[int, float]] = field(default_factory=dict)
    cost: dict[str, Summary] = field(default_factory=dict)
    params: tuple[int | None, int | None] = (None, None)
    per_label: dict[str, Summary] = field(default_factory=dict)
    curve: dict[int, Summary] = field(default_factory=dict)  # epoch → val primary metric over seeds
    # Pair-level annotations (set by ``annotate``)
    rank: int | None = None
    best: bool = False
    tied: bool = False  # not significantly different from the best row of the pair
    vs_best: Difference | None = None  # this row − the best row, in the primary metric
    # what made the primary metric's CI and the tie: "t" (over seeds), "bootstrap" (report/evidence.py),
    # or CI_FALLBACK (the bootstrap was asked for; the cell kept no usable predictions: t over seeds)
    ci: str = "t"
    gains: dict[str, Summary] = field(default_factory=dict)  # baseline strategy → gain in the primary metric
    # {seed: {content key: score}} on test when every ok seed kept its predictions (report/evidence.py sets
    # it): the paired bootstrap of the CIs, the bold and the gains reads it
    examples: dict[int, dict] | None = field(default=None, repr=False, compare=False)
    pareto: bool = False
    convergence: Convergence | None = None  # None: no curve of two evaluations (a closed-form fit)
    adequacy: Adequacy | None = None  # the budget check's verdict (report/evidence.py:budget_checks), when run
    budget: dict[str, Any] = field(default_factory=dict)  # what the cell trained with (first ok seed)
    budget_differs: list[str] = field(default_factory=list)  # keys unlike the pair's reference budget
    search: dict[str, Any] | None = None  # the space, the chosen point, the grid edge, the tuning cost
    data: dict[str, Any] = field(default_factory=dict)  # fingerprint, evaluation / unlabeled domain
    machines: dict[str, int] = field(default_factory=dict)  # the machine of each record (machines.describe) → count
    busy: list[Busy] = field(default_factory=list)  # seeds whose machine was loaded beyond its cores

    @property
    def falls_with_budget(self) -> bool:
        """↘: the budget check found that twice the budget loses more than the noise."""
        return self.adequacy is not None and self.adequacy.degrades

    @property
    def still_rising(self) -> bool:
        """↗: the budget check found that twice the budget gains more than the noise; without a
        measured check, the validation metric still rose at the last evaluation (:class:`Convergence`)."""
        verdict = self.adequacy.adequate if self.adequacy is not None else None
        if verdict is not None:
            return not verdict
        return self.convergence is not None and not self.convergence.converged

    @property
    def group(self) -> str:
        """The pair, and the data variant when the pair has several: rows are compared within a group."""
        return self.pair if self.variant is None else f"{self.pair} [data {self.variant[:8]}]"

    @property
    def in_domain_da(self) -> bool:
        """A cell given unlabeled data of another domain but scored on its training domain."""
        d = self.data
        return bool(d.get("unlabeled_domain")) and d.get("eval_domain") != d.get("unlabeled_domain")

    @property
    def score(self) -> Summary:
        """The primary metric over seeds (``n == 0`` when there is none)."""
        return self.metrics.get(self.primary or "", EMPTY)

    @property
    def primary_seeds(self) -> dict[int, float]:
        """``{seed: primary metric}`` of the ok seeds."""
        return self.by_seed.get(self.primary or "", {})


def _num(v: Any) -> float | None:
    if type(v) is float:  # JSON's numbers, first: a report calls this ~20 times per record
        return None if v != v else v
    if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numpy's numbers count too
        return None
    return None if math.isnan(v) else float(v)


def _cost_value(cost: dict, key: str) -> float | None:
    """A cost figure of one record; a run that reused cached work (a probe's features or its fit,
    computed by an earlier run) is charged what that work took, so that the first seed to run
    and a warm cache do not make a strategy look free."""
    value = _num(cost.get(key))
    if value is None:
        return None
    reused = cost.get("reused") or {}
    extra = sum(float(v) for v in reused.values())
    if key == "wall_s":
        return value + extra
    gpu_hours = _num(cost.get("gpu_hours"))
    if key == "gpu_hours" and value > 0:  # a GPU run: the reused work ran on one too
        return value + extra / 3600
    if key == "price" and gpu_hours:  # the same rate per GPU-hour
        return value * (gpu_hours + extra / 3600) / gpu_hours
    phase = REUSED_PHASE.get(key)
    return value + float(reused.get(phase, 0.0)) if phase else value


def is_collapsed(metrics: dict) -> bool:
    """The test predictions use a single label while the gold has several (an NER model that tags
    every word O, a classifier that always says one class): the majority-class plateau."""
    predicted, gold = metrics.get("predicted_classes"), metrics.get("gold_classes")
    return isinstance(predicted, int) and isinstance(gold, int) and predicted <= 1 < gold


def _row(suite: str, smoke: bool, pair: str, label: str, recs: list[RecordSummary]) -> Row:
    recs.sort(key=lambda r: r.seed)
    ok = [r for r in recs if r.status == "ok"]
    first = recs[0]
    row = Row(suite, pair, label, first.strategy, first.task, first.primary_metric, smoke,
              n_ok=len(ok), n_failed=len(recs) - len(ok),
              failures=[f"s{r.seed}: {r.status}: {(r.error or {}).get('type', '')} "
                        f"{(r.error or {}).get('message', '')}".strip()[:200] for r in recs if r.status != "ok"])
    for r in recs:
        m = r.machine
        row.machines[describe(m)] = row.machines.get(describe(m), 0) + 1
        if (b := busy(m, r.seed)) is not None:
            row.busy.append(b)
    for name in SCALAR_METRICS:
        vals = {r.seed: v for r in ok if (v := _num(r.metrics.get(name))) is not None}
        if vals:
            row.by_seed[name] = vals
            row.metrics[name] = summarize(list(vals.values()))
    for key in COST_KEYS:
        cvals = [v for r in ok if (v := _cost_value(r.cost, key)) is not None]
        if cvals:
            row.cost[key] = summarize(cvals)
    if not ok:
        return row
    row.params = (ok[0].cost.get("trainable_params"), ok[0].cost.get("total_params"))
    labels: dict[str, list[float]] = defaultdict(list)
    epochs: dict[int, list[float]] = defaultdict(list)
    curve_key = f"val_{row.primary}"
    for r in ok:
        for name, v in (r.metrics.get("per_label") or {}).items():
            f1 = _num(v.get("f1") if isinstance(v, dict) else v)
            if f1 is not None:
                labels[name].append(f1)
        for point in r.curve:
            y, epoch = _num(point.get(curve_key)), point.get("epoch")
            if y is not None and isinstance(epoch, int):
                epochs[epoch].append(y)
    row.per_label = {k: summarize(v) for k, v in sorted(labels.items())}
    row.curve = {e: summarize(v) for e, v in sorted(epochs.items())}
    row.convergence = convergence(ok, curve_key)
    row.collapsed = [r.seed for r in ok if is_collapsed(r.metrics)]
    first_ok = ok[0]
    row.budget = dict(first_ok.budget)
    row.budget_differs = list(first_ok.budget.get("differs") or [])
    row.search = first_ok.search
    row.data = dict(first_ok.data)
    for key in ("steps", "examples_seen"):  # these vary by seed (early stopping): their mean
        used = [v for r in ok if (v := _num(r.budget.get(key))) is not None]
        if used:
            row.budget[key] = summarize(used).mean
    return row


def convergence(records: list[RecordSummary], curve_key: str) -> Convergence | None:
    """Rise of the validation metric between the last two evaluations, over the seeds with two.
    A run that stopped early (patience) has converged by definition."""
    rises, last = [], []
    for r in records:
        points = [p for p in r.curve if _num(p.get(curve_key)) is not None]
        if len(points) < 2:
            continue
        last.append(float(points[-1][curve_key]))
        rises.append(0.0 if r.cost.get("stopped_early") else float(points[-1][curve_key]) - float(points[-2][curve_key]))
    if not rises:
        return None
    return Convergence(rise=sum(rises) / len(rises), spread=summarize(last).std if len(last) > 1 else 0.0,
                       seeds=len(rises))


def baseline_row(rows: list[Row], strategy: str) -> Row | None:
    """The row of ``strategy`` (the one labelled like the strategy when several are)."""
    found = [r for r in rows if r.strategy == strategy]
    return next((r for r in found if r.label == strategy), found[0] if found else None)


def pair_budget(rows: list[Row]) -> None:
    """Each row's budget against its pair's reference budget, judged now rather than when the run
    ran: the reference most of the pair's cells recorded (a cell run before the suite's defaults
    changed keeps its old record, and is then unlike the others)."""
    refs = [tuple((k, r.budget["reference"].get(k)) for k in BUDGET_KEYS) for r in rows if r.budget.get("reference")]
    if not refs:
        return
    # the most common; ties broken by text (values may be None beside numbers: not orderable)
    counts = Counter(refs)
    common = dict(max(counts.items(), key=lambda kv: (kv[1], repr(kv[0])))[0])
    for r in rows:
        if r.budget:
            r.budget["reference"] = common
            r.budget_differs = [k for k in BUDGET_KEYS if k in r.budget and r.budget[k] != common.get(k)]


def annotate(rows: list[Row]) -> None:
    """Rank, best/tied flags, gains and the Pareto front within one pair's rows (in place)."""
    pair_budget(rows)
    scored = sorted((r for r in rows if r.score.n), key=lambda r: (-r.score.mean, r.label))
    for i, r in enumerate(scored, 1):
        r.rank = i
    if scored:
        top = scored[0]
        top.best = top.tied = True
        for r in scored[1:]:
            r.vs_best = difference(r.primary_seeds, top.primary_seeds)
            r.tied = not r.vs_best.significant
    for base_name in GAIN_BASELINES:
        base = baseline_row(rows, base_name)
        if base is None or not base.primary_seeds:
            continue
        for r in rows:
            if r is not base and r.primary_seeds:
                g = paired_gain(r.primary_seeds, base.primary_seeds)
                if g.n:
                    r.gains[base_name] = g
    points = {r.label: (r.score.mean, r.cost[PARETO_COST].mean)
              for r in scored if PARETO_COST in r.cost}
    front = pareto_front(points)
    for r in rows:
        r.pareto = r.label in front


def suite_run_time(records: Iterable[RecordSummary]) -> dict[tuple[str, bool], tuple[int, float]]:
    """Per (suite, smoke): the computations its records stand for (trials, finals, teachers) and
    their run time summed. A record that reuses another's computation carries its start and end,
    so a computation counts once; each run_id's latest record counts."""
    seen: dict[tuple[str, bool], set] = defaultdict(set)
    out: dict[tuple[str, bool], tuple[int, float]] = {}
    for r in latest(records).values():
        key = (r.suite, r.smoke)
        wall = r.cost.get("wall_s")
        ident = (r.pair, r.seed, r.started_at, r.finished_at, wall, repr(r.metrics.get(r.primary_metric or "")),
                 r.run_id if wall is None else None)  # a record made without running (an input failed): its own
        if ident in seen[key]:
            continue
        seen[key].add(ident)
        n, s = out.get(key, (0, 0.0))
        out[key] = (n + 1, s + (_num(wall) or 0.0))
    return out


def aggregate(records: Iterable[RecordSummary]) -> list[Row]:
    """Group the finals by (suite, smoke, pair, data fingerprint, label); the latest record per
    run_id wins.

    Rows come sorted by suite, smoke, pair (and data variant), then best primary metric first.
    """
    records = list(records)
    run_time = suite_run_time(records)
    finals = {k: r for k, r in latest(records).items() if r.role == "final"}  # a run_id now aux is not a final
    # one final per (cell, seed): a suite edited in place (another grid, another budget) leaves the
    # old finals beside the new ones; the latest of each seed stands for the cell, the rest are counted
    cell_prints: dict[tuple, set[str]] = defaultdict(set)
    for r in finals.values():
        if r.data.get("fingerprint"):
            cell_prints[(r.suite, r.smoke, r.pair, r.label)].add(r.data["fingerprint"])

    def fingerprint(r: RecordSummary) -> str | None:  # a run that failed before its data loaded: its cell's
        own = cell_prints[(r.suite, r.smoke, r.pair, r.label)]
        return r.data.get("fingerprint") or (next(iter(own)) if len(own) == 1 else None)

    newest: dict[tuple, RecordSummary] = {}
    superseded: dict[tuple, int] = defaultdict(int)
    for r in sorted(finals.values(), key=lambda r: r.written_at):
        seed_key = (r.suite, r.smoke, r.pair, r.label, r.seed, fingerprint(r))
        if seed_key in newest:  # records on other examples are another variant, not superseded
            superseded[seed_key[:4]] += 1
        newest[seed_key] = r
    prints: dict[tuple[str, bool, str], set[str | None]] = defaultdict(set)
    for r in newest.values():
        if r.status == "ok":
            prints[(r.suite, r.smoke, r.pair)].add(r.data.get("fingerprint"))
    groups: dict[tuple[str, bool, str, str | None, str], list[RecordSummary]] = defaultdict(list)
    for r in newest.values():
        variant = None
        if len(prints[(r.suite, r.smoke, r.pair)]) > 1:
            variant = fingerprint(r) or "unknown"
        groups[(r.suite, r.smoke, r.pair, variant, r.label)].append(r)
    by_pair: dict[tuple[str, bool, str, str], list[Row]] = defaultdict(list)
    for (suite, smoke, pair, variant, label), recs in groups.items():
        row = _row(suite, smoke, pair, label, recs)
        row.variant = variant
        row.superseded = superseded.get((suite, smoke, pair, label), 0)
        by_pair[(suite, smoke, pair, variant or "")].append(row)
    rows: list[Row] = []
    for key in sorted(by_pair):
        pair_rows = by_pair[key]
        annotate(pair_rows)
        pair_rows.sort(key=lambda r: (r.rank is None, r.rank or 0, r.label))
        rows += pair_rows
    for row in rows:
        row.suite_runs, row.suite_run_s = run_time.get((row.suite, row.smoke), (0, 0.0))
    return rows
