"""``harness report --ci bootstrap``: cells' CIs and the ties with the best from the kept predictions.

A cell whose every ok final kept its predictions (``harness/predictions.py``) and whose primary
metric is a mean over test examples (accuracy) gets the hierarchical bootstrap's interval over
seeds and test examples (:func:`harness.report.stats.hierarchical_bootstrap`) in place of the
t interval over seeds, and is tied with its pair's best unless the paired bootstrap of their
difference, by seed and content key, excludes 0 (:func:`harness.report.stats.paired_bootstrap`).
Any other cell keeps the t interval and the seed-paired test (``Row.ci`` says which).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.predictions import DamagedPredictions, load
from harness.records import RecordSummary, latest, suite_dir
from harness.report.aggregate import Row
from harness.report.stats import N_BOOT, hierarchical_bootstrap, paired_bootstrap

# primary metrics that are a mean of a per-example score (the score: whether the prediction is right)
PER_EXAMPLE = ("accuracy",)


def example_scores(record: RecordSummary, results: str | Path) -> dict[str, float] | None:
    """``{content key: 1.0 if right else 0.0}`` on the test split of ``record``'s kept predictions
    (looked for in its suite's directory under ``results``, or in ``results`` itself), or None
    when it has none or they are damaged. A key seen twice in the split (a duplicate example)
    is told apart by its occurrence."""
    if not record.predictions or record.primary_metric not in PER_EXAMPLE:
        return None
    for directory in (suite_dir(results, record.suite, record.smoke), Path(results)):
        try:
            test = load(directory, record.predictions).get("test")
        except DamagedPredictions:
            continue
        if test is None or test.predictions.seq_index is not None:
            return None
        seen: Counter[str] = Counter()
        out: dict[str, float] = {}
        right = np.asarray(test.predictions.y_true) == np.asarray(test.predictions.y_pred)
        for key, ok in zip(test.keys.tolist(), right.tolist(), strict=True):
            out[f"{key}#{seen[key]}" if seen[key] else key] = float(ok)
            seen[key] += 1
        return out
    return None


def _cells(rows: list[Row], records: Iterable[RecordSummary], results: str | Path) -> dict[int, dict[int, dict]]:
    """Per row (by id), ``{seed: per-example scores}`` when every ok seed of the row has them."""
    finals = [r for r in latest(records).values() if r.role == "final" and r.status == "ok"]
    newest: dict[tuple, RecordSummary] = {}
    for r in sorted(finals, key=lambda r: r.written_at):  # the latest final of a cell and seed, as aggregate
        newest[(r.suite, r.smoke, r.pair, r.label, r.seed, r.data.get("fingerprint"))] = r
    by_cell: dict[tuple, list[RecordSummary]] = defaultdict(list)
    for r in newest.values():
        by_cell[(r.suite, r.smoke, r.pair, r.label)].append(r)
    out: dict[int, dict[int, dict]] = {}
    for row in rows:
        recs = [r for r in by_cell.get((row.suite, row.smoke, row.pair, row.label), [])
                if row.variant is None or r.data.get("fingerprint") == row.variant]
        seeds = row.primary_seeds
        if not seeds or sorted(r.seed for r in recs) != sorted(seeds):
            continue
        scores = {r.seed: example_scores(r, results) for r in recs}
        if all(s is not None for s in scores.values()) \
                and all(abs(np.mean(list(s.values())) - seeds[k]) < 1e-9 for k, s in scores.items() if s):
            out[id(row)] = {k: s for k, s in scores.items() if s is not None}
    return out


def bootstrap_rows(rows: list[Row], records: Iterable[RecordSummary], results: str | Path,
                   n_boot: int = N_BOOT, seed: int = 0) -> int:
    """Give the cells of ``rows`` (one suite, annotated) whose predictions allow it the bootstrap's
    CI and tie with the best (in place); returns how many cells changed."""
    cells = _cells(rows, records, results)
    for row in rows:
        scores = cells.get(id(row))
        if scores is None:
            continue
        keys = sorted(set.intersection(*(set(s) for s in scores.values())))
        lo, hi = hierarchical_bootstrap([np.array([s[k] for k in keys]) for s in scores.values()], n_boot,
                                        np.random.default_rng(seed))
        row.metrics[row.primary or ""] = replace(row.score, interval=(lo, hi), ci95=(hi - lo) / 2)
        row.ci = "bootstrap"
    best: dict[tuple, Row] = {(r.suite, r.smoke, r.group): r for r in rows if r.best}
    for row in rows:
        top = best.get((row.suite, row.smoke, row.group))
        if top is None or row is top or row.rank is None or id(row) not in cells or id(top) not in cells:
            continue
        row.vs_best = paired_bootstrap(cells[id(row)], cells[id(top)], n_boot, np.random.default_rng(seed))
        row.tied = not row.vs_best.significant
    return len(cells)

