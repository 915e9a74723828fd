"""The report's default CIs (``harness report``; ``--ci seeds`` turns them off): cells' CIs and the
ties with the best from the kept predictions.

A cell whose every ok final kept its predictions (``harness/predictions.py``) gets a bootstrap
interval over seeds and test examples in place of the t interval over seeds, and is tied with its
pair's best unless the paired bootstrap of their difference, by seed and content key, excludes 0:

* accuracy, a mean over test examples: :func:`harness.report.stats.hierarchical_bootstrap` and
  :func:`~harness.report.stats.paired_bootstrap` over each example's right / wrong;
* entity F1 (token classification), a ratio of counts summed over the test set:
  :func:`~harness.report.stats.count_bootstrap` and :func:`~harness.report.stats.paired_count_bootstrap`
  over each test sentence's ``[entities right, predicted, gold]`` (seqeval's strict IOB2 counts,
  :func:`harness.metrics.entity_counts`): sentences are resampled, whole.

The gains over a baseline (the leaderboard's "gain vs scratch / linear_probe", the domain view's
gains) are the same paired bootstraps when both cells have predictions (:func:`row_gain`). An
entity-F1 cell that got no entity right on any seed scores 0 on every resample; its interval's upper
end is then the exact binomial bound (:func:`harness.report.stats.entity_f1_bootstrap`).

Any other cell keeps the t interval and the seed-paired test (``Row.ci`` says which).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.metrics import entity_counts, f1_of_counts
from harness.predictions import DamagedPredictions, SplitPredictions, load
from harness.records import RecordSummary, latest, suite_dir
from harness.report.aggregate import CI_FALLBACK, GAIN_BASELINES, Adequacy, Row, baseline_row
from harness.report.stats import (
    N_BOOT,
    Difference,
    Summary,
    as_gain,
    entity_f1_bootstrap,
    hierarchical_bootstrap,
    paired_bootstrap,
    paired_count_bootstrap,
    paired_gain,
)
from harness.search import val_score

# primary metrics that are a mean of a per-example score (the score: whether the prediction is right)
PER_EXAMPLE = ("accuracy",)
# primary metrics that are a ratio of per-sentence counts summed over the test set
COUNTED = ("f1",)


def _per_example(test: SplitPredictions, metric: str) -> list | None:
    """Each test example's score (accuracy: 1.0 right, 0.0 wrong) or counts (F1: its sentence's
    ``[right, predicted, gold]`` entities), in the split's order; None when ``metric`` is neither."""
    p = test.predictions
    if metric in PER_EXAMPLE and p.seq_index is None:
        return (np.asarray(p.y_true) == np.asarray(p.y_pred)).astype(float).tolist()
    if metric in COUNTED and p.seq_index is not None and p.sequences is not None:
        return list(entity_counts(p, strict=True))
    return None


def value_of(scores: dict) -> float:
    """The metric a cell's per-example scores (or counts) give on the whole test set."""
    values = np.stack([np.asarray(v, dtype=float) for v in scores.values()])
    return float(values.mean()) if values.ndim == 1 else float(f1_of_counts(values.sum(axis=0)))


def example_scores(record: RecordSummary, results: str | Path, split: str = "test") -> dict | None:
    """``{content key: score}`` on ``split`` (test) of ``record``'s kept predictions (looked for in
    its suite's directory under ``results``, or in ``results`` itself): accuracy's 1.0 / 0.0 per
    example, F1's ``[right, predicted, gold]`` entity counts per sentence. None when it has none,
    they are damaged, or the primary metric is neither. A key seen twice in the split (a duplicate
    example) is told apart by its occurrence."""
    if not record.predictions or record.primary_metric not in (*PER_EXAMPLE, *COUNTED):
        return None
    for directory in (suite_dir(results, record.suite, record.smoke), Path(results)):
        try:
            test = load(directory, record.predictions).get(split)
        except DamagedPredictions:
            continue
        scores = None if test is None else _per_example(test, record.primary_metric)
        if scores is None:
            return None
        seen: Counter[str] = Counter()
        out: dict = {}
        for key, score in zip(test.keys.tolist(), scores, strict=True):
            out[f"{key}#{seen[key]}" if seen[key] else key] = score
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
                and all(abs(value_of(s) - seeds[k]) < 1e-9 for k, s in scores.items() if s):
            out[id(row)] = {k: s for k, s in scores.items() if s is not None}
    return out


def bootstrap_rows(rows: list[Row], records: Iterable[RecordSummary], results: str | Path,
                   n_boot: int = N_BOOT, seed: int = 0) -> int:
    """Give the cells of ``rows`` (one suite, annotated) whose predictions allow it the bootstrap's
    CI and tie with the best (in place); returns how many cells changed."""
    cells = _cells(rows, records, results)
    for row in rows:
        scores = cells.get(id(row))
        row.examples = scores
        if scores is None:
            if row.n_ok:  # the bootstrap was asked for, and this cell cannot have it
                row.ci = CI_FALLBACK
            continue
        keys = sorted(set.intersection(*(set(s) for s in scores.values())))
        aligned = [np.array([s[k] for k in keys], dtype=float) for s in scores.values()]
        rng = np.random.default_rng(seed)
        lo, hi = hierarchical_bootstrap(aligned, n_boot, rng) if aligned[0].ndim == 1 \
            else entity_f1_bootstrap(aligned, n_boot, rng)
        row.metrics[row.primary or ""] = replace(row.score, interval=(lo, hi), ci95=(hi - lo) / 2)
        row.ci = "bootstrap"
    best: dict[tuple, Row] = {(r.suite, r.smoke, r.group): r for r in rows if r.best}
    for row in rows:
        top = best.get((row.suite, row.smoke, row.group))
        if top is None or row is top or row.rank is None or row.examples is None or top.examples is None:
            continue
        row.vs_best = paired_difference(row, top, n_boot, seed)
        row.tied = not row.vs_best.significant
    by_group: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        by_group[(row.suite, row.smoke, row.group)].append(row)
    for group in by_group.values():
        for name in GAIN_BASELINES:
            base = baseline_row(group, name)
            for row in group:
                if name in row.gains and base is not None:
                    row.gains[name] = row_gain(row, base, n_boot, seed)
    return len(cells)


def paired_difference(a: Row, b: Row, n_boot: int = N_BOOT, seed: int = 0) -> Difference:
    """``a − b`` in the primary metric by the paired bootstrap over seeds and test examples (both
    rows' ``examples``: :func:`bootstrap_rows` set them): per example for accuracy, per sentence's
    entity counts for F1."""
    assert a.examples is not None and b.examples is not None
    rng = np.random.default_rng(seed)
    if a.primary in COUNTED:
        return paired_count_bootstrap(a.examples, b.examples, f1_of_counts, n_boot, rng)
    return paired_bootstrap(a.examples, b.examples, n_boot, rng)


def row_gain(a: Row, b: Row, n_boot: int = N_BOOT, seed: int = 0) -> Summary:
    """The gain of row ``a`` over row ``b`` in the primary metric: the paired bootstrap when both kept
    their predictions (the test set's sampling counted: a deterministic pair gets a width), else the
    seed-paired t interval (:func:`harness.report.stats.paired_gain`)."""
    if a.examples is not None and b.examples is not None and a.primary == b.primary:
        d = paired_difference(a, b, n_boot, seed)
        if not np.isnan(d.mean):
            return as_gain(d)
    return paired_gain(a.primary_seeds, b.primary_seeds)


def budget_checks(rows: list[Row], records: Iterable[RecordSummary], results: str | Path, n_boot: int = N_BOOT,
                  seed: int = 0) -> int:
    """Give each row whose cell ran a budget check (``budget_check: true``: an aux run of the first
    seed at twice the epochs) its :class:`~harness.report.aggregate.Adequacy` (in place): the gain
    of the check over the final of that seed on the validation split, paired by example and
    bootstrapped (accuracy per example, entity F1 per sentence) when both kept their validation
    predictions. Returns how many rows got one."""
    latest_ok = [r for r in latest(records).values() if r.status == "ok"]

    def cell(r: RecordSummary) -> tuple:
        return r.suite, r.smoke, r.pair, r.label, r.seed, r.data.get("fingerprint")

    checks = {cell(r): r for r in sorted(latest_ok, key=lambda r: r.written_at)
              if r.role == "aux" and (r.budget or {}).get("check")}
    finals = {cell(r): r for r in sorted(latest_ok, key=lambda r: r.written_at) if r.role == "final"}
    done = 0
    for row in rows:
        found = [(k, c) for k, c in checks.items() if k[:4] == (row.suite, row.smoke, row.pair, row.label)
                 and (row.variant is None or k[5] == row.variant)]
        if not found or found[0][0] not in finals:
            continue
        key, check = found[0]
        final = finals[key]
        ours, more = val_score(final), val_score(check)
        limit = ", ".join(f"{k} {final.budget[k]}" for k in ("epochs", "max_steps") if final.budget.get(k))
        gain = None
        a, b = example_scores(check, results, "val"), example_scores(final, results, "val")
        if a and b and more is not None and ours is not None \
                and abs(value_of(a) - more) < 1e-9 and abs(value_of(b) - ours) < 1e-9:
            rng = np.random.default_rng(seed)
            gain = paired_count_bootstrap({0: a}, {0: b}, f1_of_counts, n_boot, rng) if row.primary in COUNTED \
                else paired_bootstrap({0: a}, {0: b}, n_boot, rng)
        row.adequacy = Adequacy(int(check.budget["check"].get("factor", 2)), limit or "its budget",
                                None if ours is None or more is None else more - ours, gain)
        done += 1
    return done
