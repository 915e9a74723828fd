"""A search, whole: its ``search:`` blocks parsed, the layers merged into a cell's :class:`Search`,
its points drawn, and a final's point chosen from its trials' records. Pure; imports only
the config layer (schema, issues) and records.

Parsing: a ``search:`` block (in ``defaults``, a pair's ``train``, a strategy block or an override)
gives per key a non-empty list of candidates (a grid) or, for ``method: random|tpe``, a
distribution; the suite assembly (:mod:`harness.suite`) calls :func:`parse_search` for each.

Extending: with ``extend_edges: k`` a grid has k more slots, each filled at run time
(:func:`edge_point`) one step past the edge the best point so far sits at.

Choosing: a trial is scored by the primary metric on the validation split (``metrics.val``), or
with ``select_by:`` by a validator that reads no target label (``metrics.validators``), averaged
over the selection seeds; only points whose every selection seed finished ok compete.
Ties go to the cheaper point: fewer trainable parameters, then fewer training FLOPs, then the
earlier point.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from harness.config.issues import Collector, Path_
from harness.config.schema import SEARCH_OPTIONS, TRAIN_KEYS, SearchLayer, TrainConfig
from harness.errors import did_you_mean
from harness.records import RecordSummary

SEARCH_METHODS = ("grid", "random", "tpe")
# what a trial is scored by: ``oracle``, the primary metric on the pair's own validation split (for a
# DA pair the evaluated domain's, labels and all); or a validator that reads no target label, from
# the trial record's ``metrics.validators`` (harness/run/validators.py; docs/strategies.md)
# the validators a run with unlabeled target data records (harness.run.validators) and select_by names
LABEL_FREE = ("source_val", "dev", "entropy", "snd")
SELECT_BY = ("oracle", *LABEL_FREE)
DISTRIBUTIONS = ("log_uniform", "uniform", "int")
MAX_GRID_POINTS = 1000


# --------------------------------------------------------------------------- a cell's search


@dataclass(frozen=True)
class Search:
    """A cell's search: candidate values per key (training keys and strategy params), how points
    are drawn, and the seeds trials run on."""

    space: Mapping[str, Any]  # key → list of values (grid / categorical) or {log_uniform|uniform|int: [lo, hi]}
    method: str = "grid"
    trials: int | None = None
    selection_seeds: tuple[int, ...] = (0,)
    extend_edges: int = 0  # a grid's steps beyond an edge the best point sits at (edge_point)
    select_by: str = "oracle"

    def describe(self) -> dict[str, Any]:
        out = {"space": {k: v for k, v in self.space.items()}, "method": self.method, "n_trials": self.trials,
               "selection_seeds": list(self.selection_seeds)}
        if self.extend_edges:  # only when set: a search without it keeps the identity it had
            out["extend_edges"] = self.extend_edges
        if self.select_by != "oracle":  # absent by default: the finals of every existing search keep their ids
            out["select_by"] = self.select_by
        return out

    @property
    def sequential(self) -> bool:
        """TPE draws each point from the trials before it: its points are known only at run time."""
        return self.method == "tpe"

    def n_points(self) -> int:
        if self.method == "grid":
            return math.prod(len(v) for v in self.space.values()) + self.extend_edges
        return self.trials or 8

    def points(self, salt: str = "") -> list[dict[str, Any]]:
        """The points tried, in order: the grid's product (keys in the order written), or
        ``trials`` points drawn at random with a seed derived from ``salt`` (the cell)."""
        keys = list(self.space)
        if self.method == "grid":
            return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(self.space[k] for k in keys))]
        if self.method == "random":
            import numpy as np

            rng = np.random.default_rng(int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16))
            return [{k: draw(self.space[k], rng) for k in keys} for _ in range(self.n_points())]
        raise ValueError(f"{self.method} points are drawn at run time from the trials before them")

    def at_edge(self, chosen: Mapping[str, Any]) -> list[str]:
        """Keys whose chosen value is the smallest or largest of a numeric grid of ≥ 3 values
        (the optimum may lie outside the grid)."""
        edge = []
        for k, values in self.space.items():
            if not isinstance(values, list) or len(values) < 3 or k not in chosen:
                continue
            nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if len(nums) == len(values) and chosen[k] in (min(nums), max(nums)):
                edge.append(k)
        return edge


def point_text(point: Mapping[str, Any] | None, sep: str = " ") -> str:
    """A search point as a person reads it: ``lr=0.001 weight_decay=0`` (floats by ``:g``, so a
    learning rate shows as 0.001 or 1e-05, not 0.0010000000000000002)."""
    return sep.join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in (point or {}).items())


def draw(spec: Any, rng) -> Any:
    """One value of a search key: from a list (uniformly) or a distribution."""
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    kind, (low, high) = next(iter(spec.items()))
    if kind == "log_uniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if kind == "int":
        return int(rng.integers(low, high + 1))
    return float(rng.uniform(low, high))


def merge_search(layers: list[tuple[dict[str, Any], Any]], seeds: tuple[int, ...],
                 allowed: set[str]) -> Search | None:
    """The search in force after the layers (lowest first): a key set to a fixed value in a layer
    leaves the search of the layers below; a key searched in a layer overrides the fixed value of
    the layers below. Keys the strategy does not take (a pair-wide search over ``alpha``) are dropped."""
    space: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for fixed, layer in layers:
        for k in fixed:
            space.pop(k, None)
        if layer:
            space.update(layer.space)
            options.update(layer.options)
    space = {k: v for k, v in space.items() if k in allowed and v is not None}
    if not space:
        return None
    return Search(space=space, method=options.get("method", "grid"), trials=options.get("trials"),
                  selection_seeds=tuple(options.get("selection_seeds") or seeds[:1]),
                  extend_edges=options.get("extend_edges", 0),
                  select_by=options.get("select_by", "oracle"))


# --------------------------------------------------------------------------- parsing a search: block


def _field_adapter(model: type[BaseModel], key: str):
    from typing import Annotated

    from pydantic import TypeAdapter

    info = model.model_fields[key]
    return TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]  # a runtime-built type


def _check_value(col: Collector, owners: list[type[BaseModel]], key: str, value: Any, path: Path_) -> Any:
    """``value`` parsed as ``key`` of the first model in ``owners`` that accepts it (an issue when
    none does); returns the parsed value (``"1e-3"`` → 0.001) or None."""
    errors = []
    for model in owners:
        try:
            return _field_adapter(model, key).validate_python(value)
        except ValidationError as e:
            errors.append(e.errors()[0]["msg"])
    col.add(path, f"{errors[0]} (got {value!r})")
    return None


def parse_search(col: Collector, data: Any, path: Path_, owners: Mapping[str, type[BaseModel]]) -> SearchLayer:
    """A ``search:`` block: per key a non-empty list of candidate values (a grid), or for
    ``method: random|tpe`` a distribution ``{log_uniform|uniform|int: [low, high]}``; plus the
    options ``method``, ``trials``, ``selection_seeds`` and ``select_by``. ``owners`` maps strategy names to their
    ``Params``: a key must be a training key or a parameter of one of them."""
    block = col.mapping(data, path, "search")
    if block is None:
        return SearchLayer()
    space: dict[str, Any] = {}
    options: dict[str, Any] = {}
    params = {k for cls in owners.values() for k in cls.model_fields}
    for key, values in block.items():
        kpath = (*path, key)
        if key in SEARCH_OPTIONS:
            value = _search_option(col, key, values, kpath)
            if value is not None:
                options[key] = value
            continue
        if key not in TRAIN_KEYS and key not in params:
            col.unknown_key(path, key, sorted(TRAIN_KEYS | params | SEARCH_OPTIONS))
            continue
        if key in ("label", "search"):
            col.add(kpath, f"'{key}' cannot be searched")
            continue
        models: list[type[BaseModel]] = [TrainConfig] if key in TRAIN_KEYS else \
            [cls for cls in owners.values() if key in cls.model_fields]
        if isinstance(values, dict):
            space[key] = _distribution(col, models, key, values, kpath)
        elif isinstance(values, list) and values:
            parsed = [_check_value(col, models, key, v, (*kpath, i)) for i, v in enumerate(values)]
            if len({repr(v) for v in parsed}) != len(parsed):
                col.add(kpath, f"candidate values repeat: {values!r}")
            space[key] = parsed
        else:
            col.add(kpath, f"a search key takes a non-empty list of candidate values (a grid), or a distribution "
                    f"{{{'|'.join(DISTRIBUTIONS)}: [low, high]}} with method: random or tpe; got {values!r}")
    method = options.get("method", "grid")
    if options.get("extend_edges") and method != "grid":
        col.add((*path, "extend_edges"), f"extends a grid's edges; method {method!r} draws its own points")
    if method == "grid":
        for key, values in space.items():
            if isinstance(values, dict):
                col.add((*path, key), f"a distribution needs method: random or tpe (method is {method!r}); "
                        "a grid takes a list of values")
        size = 1
        for values in space.values():
            size *= len(values) if isinstance(values, list) else 1
        if options.get("extend_edges") and not any(extendable(v) for v in space.values()):
            col.add((*path, "extend_edges"), "no key of this grid can be extended: it needs a key of two or more "
                    "positive numbers")
        if size > MAX_GRID_POINTS:
            col.add(path, f"the grid has {size} points (more than {MAX_GRID_POINTS}); use method: random or tpe "
                    "with `trials:`")
    return SearchLayer(space, options)


def _one_of(col: Collector, value: Any, allowed: tuple[str, ...], what: str, path: Path_) -> Any:
    if value in allowed:
        return value
    close = did_you_mean(str(value), allowed)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    col.add(path, f"unknown {what} {value!r}.{hint} {what.split()[-1].capitalize()}s: {', '.join(allowed)}.")
    return None


def _search_option(col: Collector, key: str, value: Any, path: Path_) -> Any:
    if key == "method":
        return _one_of(col, value, SEARCH_METHODS, "search method", path)
    if key == "select_by":
        return _one_of(col, value, SELECT_BY, "validator", path)
    if key == "extend_edges":
        if type(value) is not int or not 0 <= value <= 10:
            col.add(path, f"must be a whole number from 0 to 10, got {value!r}")
            return None
        return value
    if key == "trials":
        if type(value) is not int or not 1 <= value <= MAX_GRID_POINTS:
            col.add(path, f"must be a whole number from 1 to {MAX_GRID_POINTS}, got {value!r}")
            return None
        return value
    if not isinstance(value, list) or not value or not all(type(s) is int and s >= 0 for s in value) \
            or len(set(value)) != len(value):
        col.add(path, f"must be a non-empty list of distinct non-negative integers, got {value!r}")
        return None
    return tuple(value)


def _distribution(col: Collector, models: list[type[BaseModel]], key: str, spec: dict, path: Path_) -> Any:
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        col.add(path, f"a distribution is one of {{{'|'.join(DISTRIBUTIONS)}: [low, high]}}, got {spec!r}")
        return None
    kind, bounds = next(iter(spec.items()))
    if not isinstance(bounds, list) or len(bounds) != 2:
        col.add((*path, kind), f"takes [low, high], got {bounds!r}")
        return None
    low, high = (_check_value(col, models, key, b, (*path, kind, i)) for i, b in enumerate(bounds))
    if low is None or high is None:
        return None
    if not low < high:
        col.add((*path, kind), f"low must be below high, got {bounds!r}")
    elif kind == "log_uniform" and low <= 0:
        col.add((*path, kind), f"log_uniform needs low > 0, got {bounds!r}")
    elif kind == "int" and not (type(low) is int and type(high) is int):
        col.add((*path, kind), f"int takes whole numbers, got {bounds!r}")
    return {kind: [low, high]}


def pop_search(col: Collector, data: dict, path: Path_, owners: Mapping[str, type[BaseModel]]) -> tuple[dict, SearchLayer]:
    """``data`` without its ``search:`` key, and that key parsed."""
    if "search" not in data:
        return data, SearchLayer()
    rest = {k: v for k, v in data.items() if k != "search"}
    return rest, parse_search(col, data["search"], (*path, "search"), owners)


# --------------------------------------------------------------------------- choosing a point


class Trial(Protocol):
    """What choosing reads of a trial's plan node (:class:`harness.plan.RunSpec` is one)."""

    @property
    def run_id(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def point(self) -> dict[str, Any] | None: ...
    @property
    def trial_index(self) -> int | None: ...


@dataclass(frozen=True)
class Choice:
    point: dict[str, Any]
    index: int
    score: float
    summary: dict[str, Any]  # what the final's record keeps: the trials, the choice, the edge


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def val_score(record: RecordSummary) -> float | None:
    metric = record.primary_metric
    return _finite((record.metrics.get("val") or {}).get(metric) if metric else None)


def trial_score(record: RecordSummary, select_by: str = "oracle") -> float | None:
    """What a trial is chosen by (higher = better): its validation score, or a validator's."""
    if select_by == "oracle":
        return val_score(record)
    return _finite((record.metrics.get("validators") or {}).get(select_by))


def test_score(record: RecordSummary) -> float | None:
    metric = record.primary_metric
    return _finite(record.metrics.get(metric) if metric else None)


def _mean(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else sum(values) / len(values)  # type: ignore[arg-type]


def preference(score: float, index: int, trainable_params: float = 0, train_flops: float = 0) -> tuple:
    """The order a search chooses its point by, smallest first: the higher score, then on a tie the
    cheaper point (fewer trainable parameters, then fewer training FLOPs), then the earlier one."""
    return -score, trainable_params, train_flops, index


def choose(search: Search, trials: Sequence[Trial], records: Mapping[str, RecordSummary]) -> Choice:
    """The best point of ``search`` given its ``trials`` (plan nodes) and their records by run_id.
    Raises ``ValueError`` when no point finished on every selection seed."""
    by_index: dict[int, list[tuple[Trial, RecordSummary | None]]] = {}
    for t in trials:
        by_index.setdefault(t.trial_index or 0, []).append((t, records.get(t.run_id)))
    rows: list[dict[str, Any]] = []
    candidates: list[tuple[tuple, int, dict[str, Any]]] = []
    for index, runs in sorted(by_index.items()):
        planned = runs[0][0].point  # a sequential search's points are known from its records only
        point = planned if planned is not None else next(
            ((r.search or {}).get("point") for _, r in runs if r is not None and r.search), None)
        done = [r for _, r in runs if r is not None and r.status == "ok"]
        ok = len(done) == len(runs)
        mean = _mean([trial_score(r, search.select_by) for r in done]) if ok else None
        first = done[0] if done else None
        cost = first.cost if first else {}
        row = {"index": index, "point": point, "val": _mean([val_score(r) for r in done]) if ok else None,
               "seeds": [t.seed for t, _ in runs], "run_ids": [t.run_id for t, _ in runs],
               "status": "ok" if ok else ",".join(sorted({r.status if r else "missing" for _, r in runs} - {"ok"})),
               "wall_s": sum(float((r.cost or {}).get("wall_s") or 0) for _, r in runs if r is not None)}
        if ok and any("validators" in r.metrics for r in done):
            # every validator's score and the test score of this point on the selection seeds: what the
            # report needs to show which point each validator would have chosen, and what it scores
            names = sorted({k for r in done for k in r.metrics.get("validators") or {}})
            row["validators"] = {k: _mean([trial_score(r, k) for r in done]) for k in names}
            row["test"] = _mean([test_score(r) for r in done])
        rows.append(row)
        if mean is not None and point is not None:
            candidates.append((preference(mean, index, cost.get("trainable_params") or 0,
                                          cost.get("train_flops") or 0), index, point))
    if not candidates and search.select_by != "oracle" and any(r["status"] == "ok" for r in rows):
        raise ValueError(f"no trial recorded the validator '{search.select_by}' (metrics.validators): select_by "
                         "needs a pair with unlabeled target data (`unlabeled:`) and a strategy that trains its model "
                         "in the loop")
    if not candidates:
        tried = "; ".join(f"#{r['index']} {r['point']}: {r['status']}" for r in rows[:5])
        raise ValueError(f"no point of the search finished on every selection seed ({len(rows)} point(s) tried; {tried})")
    order, index, point = min(candidates, key=lambda c: c[0])
    neg = order[0]
    chosen = next(r for r in rows if r["index"] == index)
    summary = {**search.describe(), "chosen": point, "chosen_index": index, "val": chosen["val"],
               **({"score": -neg} if search.select_by != "oracle" else {}),
               **edge_summary(search, point, rows), "trials": rows, "tuning_wall_s": round(sum(r["wall_s"] for r in rows), 3)}
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


# --------------------------------------------------------------------------- a grid's edges, extended


def extendable(values: Any) -> bool:
    """A grid key a step beyond its edge can be computed for: two or more positive numbers (the step
    is the grid's ratio at that edge, so a value stays positive and the grid's spacing is kept)."""
    return isinstance(values, list) and len(values) >= 2 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values)


def beyond(values: Sequence[float], top: bool) -> float | int:
    """One step past the largest (``top``) or smallest of ``values`` by the ratio of the last two."""
    v = sorted(set(values))
    new = v[-1] * v[-1] / v[-2] if top else v[0] * v[0] / v[1]
    if all(isinstance(x, int) for x in v):
        return max(1, round(new)) if round(new) not in v else (v[-1] + 1 if top else max(1, v[0] - 1))
    return float(f"{new:.6g}")


def tried_values(search: Search, points: Sequence[Mapping[str, Any] | None]) -> dict[str, list]:
    """Each extendable key's grid values and the values the extension slots tried beyond them."""
    out = {k: list(v) for k, v in search.space.items() if extendable(v)}
    for p in points:
        for k in out:
            if p and k in p and p[k] not in out[k]:
                out[k].append(p[k])
    return out


def edge_point(search: Search, earlier: Sequence[tuple[dict[str, Any] | None, float | None]]) -> dict[str, Any]:
    """The point of a grid's next extension slot from the points before it and their scores (the
    search's ``select_by``, averaged over the selection seeds): the best point so far with its first key that sits
    at an edge of the values tried moved one step beyond it (:func:`beyond`); the best point itself
    when none does, which the driver finds already computed (a slot that costs nothing)."""
    scored = [(s, i, p) for i, (p, s) in enumerate(earlier) if p is not None and s is not None]
    if not scored:
        raise ValueError("no earlier point of the grid finished: no edge to extend")
    best = min(scored, key=lambda t: (-t[0], t[1]))[2]
    for k, values in tried_values(search, [p for p, _ in earlier]).items():
        nums = sorted(values)
        if best[k] in (nums[0], nums[-1]):
            return {**best, k: beyond(nums, top=best[k] == nums[-1])}
    return dict(best)


def edge_summary(search: Search, chosen: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a final's record says of its grid's edges: ``edge`` (keys whose chosen value is the
    smallest or largest of the values tried, with ≥ 3 of them), and with ``extend_edges`` the
    values tried beyond the grid and ``edge_limit`` (the suite's limit, when every slot was
    spent and the chosen value still sits at the edge)."""
    if not search.extend_edges:
        return {"edge": search.at_edge(chosen)}
    values = tried_values(search, [r.get("point") for r in rows])
    grid = Search({**search.space, **values}, search.method)
    edge = grid.at_edge(chosen)
    added = {k: [v for v in vs if v not in search.space[k]] for k, vs in values.items()}
    return {"edge": edge, "extended": {k: v for k, v in added.items() if v},
            **({"edge_limit": search.extend_edges} if edge else {})}
