"""Aggregation: ranks, ties with the best, seed-paired gains, Pareto front, curves, failed seeds."""

from __future__ import annotations

import pytest

from harness.report.aggregate import aggregate
from tests.factories import T0, make_record


def rec(label, seed, acc, wall=10.0, status="ok", strategy=None, finished=T0, curve=()):
    return make_record(label, seed, acc, strategy=strategy, status=status, curve=list(curve),
                       error=None if status == "ok" else {"type": "RuntimeError", "message": "boom"},
                       cost={"wall_s": wall}, at=finished)


def by_label(records):
    return {r.label: r for r in aggregate(records)}


def test_rank_best_and_ties():
    recs = []
    for seed in range(3):
        recs += [rec("full_finetune", seed, [0.90, 0.92, 0.94][seed]),
                 rec("lora", seed, [0.91, 0.90, 0.93][seed]),  # within noise of the best
                 rec("linear_probe", seed, [0.85, 0.86, 0.87][seed]),  # 7 points below every seed
                 rec("scratch", seed, [0.50, 0.55, 0.60][seed])]
    rows = by_label(recs)
    assert [r.label for r in aggregate(recs)] == ["full_finetune", "lora", "linear_probe", "scratch"]
    assert [rows[k].rank for k in ("full_finetune", "lora", "linear_probe", "scratch")] == [1, 2, 3, 4]
    assert rows["full_finetune"].best and rows["full_finetune"].tied
    # lora − best per seed: +0.01, −0.02, −0.01 → mean −0.00667, CI ±0.0379: not significant
    assert rows["lora"].tied and not rows["lora"].best
    assert rows["lora"].vs_best.method == "paired-t"
    assert rows["lora"].vs_best.mean == pytest.approx(-0.02 / 3)
    # linear_probe − best: −0.05, −0.06, −0.07 → mean −0.06, CI ±0.0248: significant
    assert not rows["linear_probe"].tied
    assert rows["linear_probe"].vs_best.ci95 == pytest.approx(4.303 * 0.01 / 3**0.5)


def test_gains_over_scratch_and_linear_probe_are_seed_paired():
    recs = [rec("scratch", 0, 0.50), rec("scratch", 1, 0.60), rec("scratch", 2, 0.70),
            rec("linear_probe", 0, 0.80), rec("linear_probe", 1, 0.80),
            rec("full_finetune", 0, 0.90), rec("full_finetune", 1, 0.95), rec("full_finetune", 2, 0.99)]
    rows = by_label(recs)
    ft = rows["full_finetune"]
    g = ft.gains["scratch"]  # differences 0.40, 0.35, 0.29
    assert (g.n, g.mean) == (3, pytest.approx(0.34666667))
    assert g.std == pytest.approx(0.0550757, abs=1e-6)
    assert g.ci95 == pytest.approx(4.303 * 0.0550757 / 3**0.5, abs=1e-6)
    lp = ft.gains["linear_probe"]  # only seeds 0, 1 exist on both sides: 0.10, 0.15
    assert (lp.n, lp.mean) == (2, pytest.approx(0.125))
    assert lp.ci95 == pytest.approx(12.706 * 0.0353553 / 2**0.5, abs=1e-5)
    assert "scratch" not in rows["scratch"].gains
    assert rows["scratch"].gains["linear_probe"].mean == pytest.approx(-0.25)


def test_gain_baseline_is_found_by_strategy_when_relabelled():
    recs = [rec("from-scratch", 0, 0.5, strategy="scratch"), rec("from-scratch", 1, 0.6, strategy="scratch"),
            rec("full_finetune", 0, 0.9), rec("full_finetune", 1, 0.9)]
    assert by_label(recs)["full_finetune"].gains["scratch"].mean == pytest.approx(0.35)


def test_pareto_front_on_primary_and_wall_time():
    recs = []
    for seed in range(2):
        recs += [rec("full_finetune", seed, 0.95, wall=40), rec("linear_probe", seed, 0.90, wall=5),
                 rec("scratch", seed, 0.60, wall=30), rec("lora", seed, 0.95, wall=45)]
    rows = by_label(recs)
    assert {k for k, r in rows.items() if r.pareto} == {"full_finetune", "linear_probe"}


def test_failed_seeds_are_counted_and_all_failed_row_is_unranked():
    recs = [rec("scratch", 0, 0.5), rec("scratch", 1, None, status="failed"),
            rec("lora", 0, None, status="timeout"), rec("lora", 1, None, status="failed")]
    rows = by_label(recs)
    assert (rows["scratch"].n_ok, rows["scratch"].n_failed) == (1, 1)
    assert rows["scratch"].failures == ["s1: failed: RuntimeError boom"]
    assert rows["lora"].rank is None and not rows["lora"].tied and rows["lora"].n_failed == 2
    assert [r.label for r in aggregate(recs)] == ["scratch", "lora"]  # unranked rows last


def test_latest_record_per_run_id_wins():
    old = rec("scratch", 0, None, status="failed", finished="2026-01-01T00:00:00+00:00")
    new = rec("scratch", 0, 0.7, finished="2026-01-02T00:00:00+00:00")
    for order in ([old, new], [new, old]):
        (row,) = aggregate(order)
        assert (row.n_ok, row.n_failed, row.metrics["accuracy"].mean) == (1, 0, 0.7)


def test_curve_is_averaged_per_epoch():
    recs = [rec("scratch", s, 0.5, curve=[{"epoch": 1, "val_accuracy": 0.2 + s / 10},
                                          {"epoch": 2, "val_accuracy": 0.4 + s / 10, "val_loss": 1.0}])
            for s in range(3)]
    (row,) = aggregate(recs)
    assert sorted(row.curve) == [1, 2]
    assert row.curve[1].mean == pytest.approx(0.3) and row.curve[2].mean == pytest.approx(0.5)
    assert row.curve[2].n == 3


def test_only_real_numbers_count_as_measured():
    import numpy as np

    from harness.report.aggregate import _num

    assert _num(0.5) == 0.5 and _num(3) == 3.0 and type(_num(3)) is float
    assert _num(np.float64(0.25)) == 0.25 and _num(np.int64(2)) == 2.0
    for missing in (float("nan"), np.float64("nan"), None, True, False, np.bool_(True), "0.5", [0.5], {"f1": 0.5}):
        assert _num(missing) is None, missing
