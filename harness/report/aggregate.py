"""Records → one row per (suite, pair, strategy label): metric summaries, gains, ranks, cost. Pure.

Per pair, each row also gets its rank by the primary metric, whether it is statistically
tied with the best row (see :func:`harness.report.stats.difference`), its seed-paired gain
over ``scratch`` and over ``linear_probe``, and whether it is Pareto-optimal on
(primary metric, mean wall seconds per run).
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.records import RecordSummary
from harness.report.stats import EMPTY, Difference, Summary, difference, paired_gain, pareto_front, summarize

SCALAR_METRICS = ("accuracy", "macro_f1", "f1", "precision", "recall")
COST_KEYS = ("wall_s", "train_s", "eval_s", "feature_s", "samples_per_s", "peak_rss_mb", "peak_gpu_mem_mb",
             "peak_gpu_reserved_mb", "train_flops", "energy_j", "gpu_hours", "price")
GAIN_BASELINES = ("scratch", "linear_probe")  # strategies every other one is compared with
PARETO_COST = "wall_s"  # the x axis of the Pareto front: measured for every run, on any hardware


@dataclass
class Row:
    suite: str
    pair: str
    label: str
    strategy: str
    task: str | None
    primary: str | None
    smoke: bool
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
    gains: dict[str, Summary] = field(default_factory=dict)  # baseline strategy → gain in the primary metric
    pareto: bool = False

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


def _row(suite: str, smoke: bool, pair: str, label: str, recs: list[RecordSummary]) -> Row:
    recs.sort(key=lambda r: r.seed)
    ok = [r for r in recs if r.status == "ok"]
    first = recs[0]
    row = Row(suite, pair, label, first.strategy, first.task, first.primary_metric, smoke,
              n_ok=len(ok), n_failed=len(recs) - len(ok),
              failures=[f"s{r.seed}: {r.status}: {(r.error or {}).get('type', '')} "
                        f"{(r.error or {}).get('message', '')}".strip()[:200] for r in recs if r.status != "ok"])
    for name in SCALAR_METRICS:
        vals = {r.seed: v for r in ok if (v := _num(r.metrics.get(name))) is not None}
        if vals:
            row.by_seed[name] = vals
            row.metrics[name] = summarize(list(vals.values()))
    for key in COST_KEYS:
        cvals = [v for r in ok if (v := _num(r.cost.get(key))) is not None]
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
    return row


def _baseline(rows: list[Row], strategy: str) -> Row | None:
    """The row of ``strategy`` (the one labelled like the strategy when several are)."""
    found = [r for r in rows if r.strategy == strategy]
    return next((r for r in found if r.label == strategy), found[0] if found else None)


def annotate(rows: list[Row]) -> None:
    """Rank, best/tied flags, gains and the Pareto front within one pair's rows (in place)."""
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
        base = _baseline(rows, base_name)
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


def aggregate(records: Iterable[RecordSummary]) -> list[Row]:
    """Group records by (suite, smoke, pair, label); the latest record per run_id wins.

    Rows come sorted by suite, smoke, pair, then best primary metric first.
    """
    latest: dict[str, RecordSummary] = {}
    for r in records:
        if r.run_id not in latest or r.finished_at >= latest[r.run_id].finished_at:
            latest[r.run_id] = r
    groups: dict[tuple[str, bool, str, str], list[RecordSummary]] = defaultdict(list)
    for r in latest.values():
        groups[(r.suite, r.smoke, r.pair, r.label)].append(r)
    by_pair: dict[tuple[str, bool, str], list[Row]] = defaultdict(list)
    for (suite, smoke, pair, label), recs in groups.items():
        by_pair[(suite, smoke, pair)].append(_row(suite, smoke, pair, label, recs))
    rows: list[Row] = []
    for key in sorted(by_pair):
        pair_rows = by_pair[key]
        annotate(pair_rows)
        pair_rows.sort(key=lambda r: (r.rank is None, r.rank or 0, r.label))
        rows += pair_rows
    return rows
