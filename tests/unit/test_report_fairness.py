"""What the leaderboard must say so that a ranking is not misread: only finals, never records of
different examples in one row, budgets and their differences, convergence, the search's choice
and its grid edge, the evaluation domain of adaptation cells, intervals inside the metric's range,
strategies as rows, one colour and marker per strategy."""

from __future__ import annotations

import math

import pytest

from harness.report.aggregate import aggregate
from harness.report.format import ci, gain
from harness.report.markdown import render
from harness.report.stats import Summary
from tests.factories import make_record

REF = {"epochs": 2, "max_steps": None, "max_train_samples": None, "batch_size": 32, "grad_accum": 1}


def rec(label, seed, acc, *, role="final", fingerprint="aaaa", budget=None, search=None, curve=None,
        data=None, strategy=None, pair="p", stopped_early=False):
    budget = {**REF, "steps": 80, "examples_seen": 2560, "optimizer": "adamw", "lr": 1e-3, "precision": "fp32",
              "reference": REF, "differs": [], **(budget or {})}
    return make_record(
        label, seed, acc, run_id=f"{pair}.{label}.s{seed}.{role}.{fingerprint}", pair=pair, strategy=strategy,
        role=role, extra={"val": {"accuracy": acc}},
        curve=curve if curve is not None else [{"epoch": 1, "val_accuracy": acc - 0.0005}, {"epoch": 2, "val_accuracy": acc}],
        cost={"wall_s": 10.0, "stopped_early": stopped_early}, budget=budget, search=search,
        data={"fingerprint": fingerprint, **(data or {})})


def test_only_finals_enter_the_leaderboard():
    recs = [rec("lora", s, 0.9) for s in range(2)] + [rec("lora", 0, 0.99, role="trial"), rec("t", 0, 0.5, role="aux")]
    (row,) = aggregate(recs)
    assert row.label == "lora" and row.n_ok == 2 and row.metrics["accuracy"].mean == 0.9


def test_records_made_on_other_examples_are_never_pooled_and_are_marked():
    recs = [rec("scratch", s, 0.5) for s in range(2)] + [rec("lora", s, 0.9) for s in range(2)]
    recs += [rec("lora", s, 0.95, fingerprint="bbbb") for s in range(2)]  # e.g. another max_eval_samples
    rows = aggregate(recs)
    assert sorted((r.label, r.variant, r.n_ok) for r in rows) == [("lora", "aaaa", 2), ("lora", "bbbb", 2),
                                                                   ("scratch", "aaaa", 2)]
    # ranked only among rows of the same examples: the other data's lora does not outrank anything
    assert {r.group for r in rows} == {"p [data aaaa]", "p [data bbbb]"}
    assert next(r for r in rows if r.variant == "bbbb").rank == 1
    text = render(rows)
    assert "### p [data bbbb]" in text and "were made on other examples than the rest of `p`" in text


def test_one_dataset_gives_one_plain_row():
    (row,) = aggregate([rec("lora", s, 0.9) for s in range(3)])
    assert row.variant is None and row.group == "p"


@pytest.mark.parametrize(("lasts", "stopped", "converged"), [
    ((0.80, 0.82, 0.84), False, False),  # +5 points at the last eval, seeds agree within 2: still rising
    ((0.60, 0.80, 0.70), False, True),  # rose by 5 points, but the seeds disagree by 10: within the noise
    ((0.80, 0.82, 0.84), True, True),  # stopped early on patience: converged by definition
])
def test_a_cell_still_rising_beyond_its_seed_spread_is_marked_not_converged(lasts, stopped, converged):
    recs = [rec("ft", s, a, curve=[{"epoch": 1, "val_accuracy": a - 0.05}, {"epoch": 2, "val_accuracy": a}],
                stopped_early=stopped) for s, a in enumerate(lasts)]
    (row,) = aggregate(recs)
    assert row.convergence.converged is converged
    assert ("↗ still rising" in render([row])) is not converged


def test_budgets_are_shown_and_a_cell_unlike_its_pair_is_marked():
    recs = [rec("linear_probe", s, 0.9, budget={"epochs": 10, "steps": 400, "examples_seen": 12800,
                                                 "differs": ["epochs"]}) for s in range(2)]
    recs += [rec("lora", s, 0.85) for s in range(2)]
    text = render(aggregate(recs))
    assert "≠ budget epochs 10 (pair: 2)" in text and "| `linear_probe` | 10 | 400 | 12.80k | adamw |" in text
    assert "| `linear_probe` | **90.00** [90.00, 90.00] ≠ |" in text  # the summary carries the mark
    assert "the reference budget of this pair: epochs 2, batch_size 32, grad_accum 1" in text
    assert "| `lora` | 2 | 80 | 2.56k | adamw | 0.001 | fp32 |" in text


def test_the_search_is_shown_with_its_choice_and_the_grid_edge():
    search = {"space": {"lr": [1e-4, 1e-3, 1e-2]}, "chosen": {"lr": 1e-2}, "edge": ["lr"], "selection_seeds": [0],
              "trials": [{}, {}, {}], "val": 0.91, "tuning_wall_s": 31.5}
    text = render(aggregate([rec("lora", s, 0.9, search=search) for s in range(2)]))
    assert "lr ∈ [0.0001, 0.001, 0.01] → **0.01** ⇥ (3 trials on seed 0, best val 91.00)" in text
    assert "⇥ lr=0.01 at the grid's edge" in text and "| 31.5 |" in text
    assert "Searches: 3 trial points, chosen on validation" in text


def test_adaptation_scored_in_domain_says_so():
    da = {"unlabeled_domain": "shifted", "eval_domain": "original", "train_domain": "original"}
    rows = aggregate([rec("dann", s, 0.9, data=da) for s in range(2)])
    assert rows[0].in_domain_da
    assert "⌂ scored on original, not on the unlabeled domain (shifted)" in render(rows)
    shifted = aggregate([rec("dann", s, 0.9, data={**da, "eval_domain": "shifted"}) for s in range(2)])
    assert not shifted[0].in_domain_da and "Evaluated on: shifted domain." in render(shifted)


def test_intervals_never_leave_the_metrics_range():
    assert ci(Summary(3, 0.9, 0.1, 0.2)) == "[70.00, 100.00]"
    assert ci(Summary(3, 0.1, 0.1, 0.3)) == "[0.00, 40.00]"
    assert gain(Summary(3, 0.5, 0.3, 0.9)) == "+50.00 [-40.00, +100.00]"
    assert gain(Summary(1, 0.5, 0.0, math.nan)) == "+50.00"


def test_summary_has_strategies_as_rows_and_pairs_as_columns():
    recs = [rec(label, s, acc, pair=pair) for pair in ("a", "b") for label, acc in (("scratch", 0.5), ("lora", 0.8))
            for s in range(2)]
    text = render(aggregate(recs))
    summary = text.split("## Summary")[1].split("## Per pair")[0]
    assert "| strategy | a (accuracy) | b (accuracy) |" in summary
    assert summary.count("| `lora` |") == 1 and summary.count("| `scratch` |") == 1


def test_every_strategy_has_its_own_colour_and_marker_in_every_plot():
    from harness.report.plots import COLORS, styles_for

    labels = [f"s{k}" for k in range(14)]
    styles = styles_for(labels)
    assert len({c for c, _ in styles.values()}) == 14  # 14 strategies, 14 colours (the old palette had 10)
    assert len(set(styles.values())) == 14
    assert styles_for(reversed(labels)) == styles  # the same whatever the order rows come in
    assert len(COLORS) == 20


def test_a_pairs_budget_reference_is_the_one_most_of_its_cells_recorded():
    """A cell run before the suite's defaults changed keeps its old reference; the report judges
    every row against the majority one (ties, with a None beside a number, must not raise)."""
    from types import SimpleNamespace

    from harness.report.aggregate import pair_budget

    def row(max_steps, own_steps):
        ref = {"epochs": 3, "max_steps": max_steps, "max_train_samples": 300, "batch_size": 8, "grad_accum": 1}
        return SimpleNamespace(budget={"reference": ref, "epochs": 3, "max_steps": own_steps}, budget_differs=[])

    rows = [row(None, None), row(None, None), row(100, 100)]
    pair_budget(rows)
    assert [r.budget_differs for r in rows] == [[], [], ["max_steps"]]
    assert all(r.budget["reference"]["max_steps"] is None for r in rows)
    tie = [row(None, None), row(100, 100)]
    pair_budget(tie)  # one each: a stable choice, no TypeError comparing None with 100
    assert sorted(len(r.budget_differs) for r in tie) == [0, 1]


def test_a_cell_rerun_under_an_edited_suite_counts_each_seed_once_the_latest():
    """Another grid or budget gives a cell's finals new run_ids; the old ones stay on disk. One
    final per seed enters the row (the latest), and the row counts the ones it set aside."""
    old = [rec("lora", s, 0.5) for s in range(2)]
    new = [r.model_copy(update={"run_id": r.run_id + ".new", "metrics": {"accuracy": 0.9, "val": {"accuracy": 0.9}},
                                "finished_at": "2026-02-01T00:00:00+00:00"}) for r in old]
    (row,) = aggregate(old + new)
    assert row.n_ok == 2 and row.metrics["accuracy"].mean == 0.9 and row.superseded == 2


def test_a_cell_whose_model_predicts_one_label_is_marked_collapsed_not_converged():
    """LoRA on the small WNUT-16 budget tagged every word O on all seeds: F1 0 with a flat curve,
    which the convergence check alone reads as converged. The report says what happened."""
    from harness.report.markdown import convergence_cell, marks, notes

    def collapsed(r):
        return r.model_copy(update={"metrics": {**r.metrics, "predicted_classes": 1, "gold_classes": 10}})

    recs = [collapsed(rec("lora", 0, 0.1)), rec("lora", 1, 0.5), rec("full_finetune", 0, 0.9)]
    rows = {r.label: r for r in aggregate(recs)}
    lora, ft = rows["lora"], rows["full_finetune"]
    assert lora.collapsed == [0] and ft.collapsed == []
    assert "∅" in marks(lora) and "∅" not in marks(ft)
    assert "single label on seed(s) 0 of 2" in notes(lora)
    assert convergence_cell(lora).startswith("**no** ∅") and "∅" in render(list(rows.values()))
    one_class_gold = rec("x", 0, 1.0).model_copy(update={"metrics": {"accuracy": 1.0, "predicted_classes": 1,
                                                                     "gold_classes": 1}})
    assert aggregate([one_class_gold])[0].collapsed == []  # one label right for a one-label test set


def test_the_suites_run_time_counts_each_computation_once_trials_included():
    from harness.report.aggregate import suite_run_time

    trial = rec("lora", 0, 0.9, role="trial")
    reused = trial.model_copy(update={"run_id": "final-reusing-the-trial", "role": "final"})  # same start, end, cost
    other = rec("lora", 1, 0.8).model_copy(update={"finished_at": "2026-01-01T00:01:00+00:00"})
    assert suite_run_time([trial, reused, other]) == {("s", False): (2, 20.0)}
    (row,) = aggregate([trial, reused, other])
    assert (row.suite_runs, row.suite_run_s) == (2, 20.0)
    assert "Run time: 0.3 min summed over the suite's 2 computations" in render([row])


def test_the_latest_final_is_the_latest_written_not_the_latest_computed():
    """An edited grid's final that takes over an older trial's computation carries that trial's
    start and end; it still replaces the final of the old grid, written before it."""
    old = rec("lora", 0, 0.5).model_copy(update={"run_id": "v1", "finished_at": "2026-01-01T10:03:00+00:00"})
    new = rec("lora", 0, 0.9).model_copy(update={"run_id": "v2", "finished_at": "2026-01-01T10:01:00+00:00",
                                                  "recorded_at": "2026-01-02T09:00:00.000001+00:00"})
    (row,) = aggregate([new, old])
    assert row.metrics["accuracy"].mean == 0.9 and row.superseded == 1


def test_a_final_that_failed_before_its_data_loaded_still_replaces_the_old_seed():
    old = rec("lora", 2, 0.5)
    failed = rec("lora", 2, 0.0).model_copy(update={"run_id": "v2", "status": "failed", "data": {}, "metrics": {},
                                                     "finished_at": "2026-02-01T00:00:00+00:00"})
    (row,) = aggregate([old, failed, rec("lora", 0, 0.9)])
    assert (row.n_ok, row.n_failed) == (1, 1) and row.metrics["accuracy"].mean == 0.9


def test_a_run_id_whose_latest_record_is_aux_leaves_the_leaderboard():
    final = rec("teacher", 0, 0.9)
    aux = final.model_copy(update={"role": "aux", "finished_at": "2026-02-01T00:00:00+00:00"})
    assert aggregate([final, aux]) == []


def test_a_collapsed_closed_form_cell_is_not_called_a_solver_and_the_export_says_collapsed():
    from harness.report.export import flat
    from harness.report.markdown import convergence_cell

    probe = rec("linear_probe", 0, 0.1, curve=[], budget={"steps": 0})
    probe = probe.model_copy(update={"metrics": {**probe.metrics, "predicted_classes": 1, "gold_classes": 10}})
    (row,) = aggregate([probe])
    assert row.convergence is None and convergence_cell(row).startswith("**no** ∅")
    assert flat(row)["converged"] is False and flat(row)["collapsed_seeds"] == "0"


def test_reused_work_is_charged_to_gpu_hours_and_price_on_a_gpu_run():
    from harness.report.aggregate import _cost_value

    cost = {"wall_s": 10.0, "gpu_hours": 10 / 3600, "price": 0.02, "reused": {"fit": 350.0}}
    assert _cost_value(cost, "wall_s") == 360.0
    assert _cost_value(cost, "gpu_hours") == pytest.approx(0.1)
    assert _cost_value(cost, "price") == pytest.approx(0.72)
    assert _cost_value({**cost, "gpu_hours": 0.0}, "gpu_hours") == 0.0  # a CPU run has no GPU-hours to add to
