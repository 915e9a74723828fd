"""Choosing a search's point from its trials' records. Pure (records in, a choice out).

A trial is scored by the primary metric on the validation split (``metrics.val``), averaged over
the selection seeds; only points whose every selection seed finished ok compete. Ties go to the
cheaper point: fewer trainable parameters, then fewer training FLOPs, then the earlier point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.plan import RunSpec, Search
from harness.records import RecordSummary


@dataclass(frozen=True)
class Choice:
    point: dict[str, Any]
    index: int
    score: float
    summary: dict[str, Any]  # what the final's record keeps: the trials, the choice, the edge


def val_score(record: RecordSummary) -> float | None:
    metric = record.primary_metric
    value = (record.metrics.get("val") or {}).get(metric) if metric else None
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def choose(search: Search, trials: Sequence[RunSpec], records: Mapping[str, RecordSummary]) -> Choice:
    """The best point of ``search`` given its ``trials`` (plan nodes) and their records by run_id.
    Raises ``ValueError`` when no point finished on every selection seed."""
    by_index: dict[int, list[tuple[RunSpec, RecordSummary | None]]] = {}
    for t in trials:
        by_index.setdefault(t.trial_index or 0, []).append((t, records.get(t.run_id)))
    rows: list[dict[str, Any]] = []
    candidates: list[tuple[float, int, float, int, dict[str, Any]]] = []
    for index, runs in sorted(by_index.items()):
        planned = runs[0][0].point  # a sequential search's points are known from its records only
        point = planned if planned is not None else next(
            ((r.search or {}).get("point") for _, r in runs if r is not None and r.search), None)
        scores = [val_score(r) if r is not None and r.status == "ok" else None for _, r in runs]
        ok = all(s is not None for s in scores)
        mean = sum(s for s in scores if s is not None) / len(scores) if ok else None
        first = next((r for _, r in runs if r is not None and r.status == "ok"), None)
        cost = first.cost if first else {}
        rows.append({"index": index, "point": point, "val": mean,
                     "seeds": [t.seed for t, _ in runs], "run_ids": [t.run_id for t, _ in runs],
                     "status": "ok" if ok else ",".join(sorted({r.status if r else "missing" for _, r in runs} - {"ok"})),
                     "wall_s": sum(float((r.cost or {}).get("wall_s") or 0) for _, r in runs if r is not None)})
        if mean is not None and point is not None:
            candidates.append((-mean, cost.get("trainable_params") or 0,
                               cost.get("train_flops") or 0, index, point))
    if not candidates:
        tried = "; ".join(f"#{r['index']} {r['point']}: {r['status']}" for r in rows[:5])
        raise ValueError(f"no point of the search finished on every selection seed ({len(rows)} point(s) tried; {tried})")
    neg, _, _, index, point = min(candidates)
    summary = {**search.describe(), "chosen": point, "chosen_index": index, "val": -neg,
               "edge": search.at_edge(point), "trials": rows, "tuning_wall_s": round(sum(r["wall_s"] for r in rows), 3)}
    return Choice(point=point, index=index, score=-neg, summary=summary)


def next_point(search: Search, index: int, earlier: Sequence[tuple[dict[str, Any], float | None]],
               salt: str) -> dict[str, Any]:
    """Point ``index`` of a sequential (TPE) search from the points before it and their scores:
    Optuna's TPE sampler, seeded by the cell, replaying the earlier trials (so the same records
    always give the same point)."""
    try:
        import optuna
    except ImportError:
        raise ValueError("method: tpe needs Optuna: pip install 'transfer-harness[search]'") from None
    import hashlib

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {k: distribution(v) for k, v in search.space.items()}
    # seeded by the cell and the point's index: the sampler is made anew for every point, so the
    # same seed would draw the same first point each time
    seed = int(hashlib.sha256(f"{salt}#{index}".encode()).hexdigest()[:8], 16)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for point, score in earlier:
        state = optuna.trial.TrialState.COMPLETE if score is not None else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(params=point, distributions=dists, value=score, state=state))
    trial = study.ask(dists)
    return dict(trial.params)


def distribution(spec: Any):
    import optuna

    if isinstance(spec, list):
        return optuna.distributions.CategoricalDistribution(spec)
    kind, (low, high) = next(iter(spec.items()))
    if kind == "int":
        return optuna.distributions.IntDistribution(low, high)
    return optuna.distributions.FloatDistribution(low, high, log=kind == "log_uniform")
