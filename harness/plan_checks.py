"""The checks of a suite that need its plan: each cell's strategy checks (a teacher that exists, a
depth that fits), run on the values the cell will run with (its own, and every point of its
search, as :func:`harness.plan.resolve_cell` resolves them). The suite assembly
(:func:`harness.suite.load_suite`) runs them once the file itself is clean."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from harness.config.issues import Collector, Path_, format_path
from harness.config.schema import TRAIN_KEYS, PairSpec, StrategySpec, SuiteSpec, TrainConfig, layered_settings
from harness.errors import Issue
from harness.plan import resolve_cell


def check_cells(suite: SuiteSpec, col: Collector) -> list[Issue]:
    """Every cell's issues, added to ``col`` at its strategy's entry; returns the warnings (legal,
    probably unintended settings) that ``harness validate`` prints."""
    from harness.registry import STRATEGIES

    warnings: list[Issue] = []
    for i, s in enumerate(suite.strategies):
        cls = STRATEGIES.get(s.name)
        path = ("strategies", i, s.name)
        for pair in suite.pairs:
            if pair.strategies is not None and s.label not in pair.strategies:
                continue
            for msg in cell_issues(cls, s, pair, suite, warnings, col.file, col.line(path), path):
                col.add(path, f"pair '{pair.id}': {msg}")
    return warnings


def cell_issues(cls, strat: StrategySpec, pair: PairSpec, suite: SuiteSpec, warnings: list[Issue], file: str,
                 line: int, path: Path_) -> list[str]:
    """A cell's strategy checks, for its own values and for every point of its search (distribution
    searches: their bounds); its warnings go to ``warnings``."""
    layers, base = layered_settings(suite.defaults, pair, strat, pair.overrides.get(strat.label))
    train = TrainConfig.model_validate(layers)
    cell = resolve_cell(suite, pair, strat)
    if cell.search is not None and cell.search.method == "grid":
        spread = [k for k, v in cell.search.space.items() if not isinstance(v, list)]
        if spread:  # a distribution from one layer under a grid method from another
            return [f"search: {', '.join(spread)} is a distribution, but the cell's search method is grid; "
                    "set method: random or tpe beside it"]
    if cell.search is not None and cell.search.sequential and len(cell.search.selection_seeds) > 1:
        return [f"search: method {cell.search.method} draws each point from the trials before it on one seed; "
                f"give it one selection seed (got {list(cell.search.selection_seeds)})"]
    if cell.search is not None and cell.search.select_by != "oracle" and not pair.target.params.get("unlabeled"):
        # the validators are measured on unlabeled target data: without it no trial records one
        return [f"search: select_by: {cell.search.select_by} reads the unlabeled target data the pair does not have "
                "(set unlabeled: on its target), or select_by: oracle"]
    points: list[dict[str, Any]] = [{}]
    if cell.search is not None and cell.search.method == "grid":
        points = cell.search.points()
    elif cell.search is not None:  # values drawn at run time: check each candidate, or each bound
        points = [{k: c} for k, v in cell.search.space.items()
                  for c in (v if isinstance(v, list) else next(iter(v.values())))]
    issues: list[str] = []
    for point in points:
        values = {**base, **{k: v for k, v in point.items() if k in cls.Params.model_fields}}
        cfg = train.model_copy(update={k: v for k, v in point.items() if k in TRAIN_KEYS})
        try:
            params = cls.Params.model_validate(values)
        except ValidationError as e:
            issues.append(f"search point {point}: {e.errors()[0]['msg']}")
            continue
        where = f" (search point {point})" if point else ""
        issues += [f"{m}{where}" for m in cls.check(params, pair, suite)]
        for m in cls.warnings(params, pair, suite, cfg):
            warnings.append(Issue(file, line, format_path(path), f"pair '{pair.id}': {m}{where}"))
    return list(dict.fromkeys(issues))

