"""Records → one row per (suite, pair, strategy label): metric summaries and cost. Pure."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.records import RunRecord
from harness.report.stats import Summary, summarize


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


SCALAR_METRICS = ("accuracy", "macro_f1", "f1", "precision", "recall")
COST_KEYS = ("train_s", "eval_s", "feature_s", "wall_s", "samples_per_s", "peak_rss_mb", "peak_gpu_mem_mb",
             "train_flops", "energy_j", "gpu_hours", "price")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(float(v)) else None


def aggregate(records: Iterable[RunRecord]) -> list[Row]:
    """Group records by (suite, smoke, pair, label); the latest record per run_id wins."""
    latest: dict[str, RunRecord] = {}
    for r in records:
        if r.run_id not in latest or r.finished_at >= latest[r.run_id].finished_at:
            latest[r.run_id] = r
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in latest.values():
        groups[(r.suite, r.smoke, r.pair, r.label)].append(r)
    rows = []
    for (suite, smoke, pair, label), recs in groups.items():
        recs.sort(key=lambda r: r.seed)
        ok = [r for r in recs if r.status == "ok"]
        first = recs[0]
        row = Row(suite, pair, label, first.strategy, first.task, first.primary_metric, smoke,
                  n_ok=len(ok), n_failed=len(recs) - len(ok),
                  failures=[f"s{r.seed}: {r.status}: {(r.error or {}).get('type', '')} {(r.error or {}).get('message', '')}".strip()[:200]
                            for r in recs if r.status != "ok"])
        for name in SCALAR_METRICS:
            vals = {r.seed: _num(r.metrics.get(name)) for r in ok}
            vals = {s: v for s, v in vals.items() if v is not None}
            if vals:
                row.by_seed[name] = vals
                row.metrics[name] = summarize(list(vals.values()))
        for key in COST_KEYS:
            vals = [_num(r.cost.get(key)) for r in ok]
            vals = [v for v in vals if v is not None]
            if vals:
                row.cost[key] = summarize(vals)
        if ok:
            row.params = (ok[0].cost.get("trainable_params"), ok[0].cost.get("total_params"))
            labels: dict[str, list[float]] = defaultdict(list)
            for r in ok:
                for name, v in (r.metrics.get("per_label") or {}).items():
                    f1 = v.get("f1") if isinstance(v, dict) else v
                    if _num(f1) is not None:
                        labels[name].append(float(f1))
            row.per_label = {k: summarize(v) for k, v in sorted(labels.items())}
        rows.append(row)
    rows.sort(key=lambda r: (r.suite, r.smoke, r.pair, -(r.metrics[r.primary].mean if r.primary in r.metrics else -math.inf), r.label))
    return rows
