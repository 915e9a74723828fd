"""A chosen point at a grid's numeric edge extends the grid (``search: {extend_edges: k}``): up to k
slots, each one step past the edge the best point so far sits at (the grid's ratio), drawn by the
driver from the trials before it; a slot with no edge to extend reuses the best point's record;
the final's record says what was tried beyond the grid and when the suite's limit was hit."""

from __future__ import annotations

from harness import api
from harness.executors.base import Graph
from harness.executors.job import Job
from harness.plan import expand
from harness.search import Search, edge_point, edge_summary
from tests.unit.test_search import errors, record, suite

GRID = "  - full_finetune: {search: {lr: [1e-3, 3e-3, 1e-2]EXTRA}}\n"


def test_a_slot_steps_past_the_edge_the_best_point_sits_at_by_the_grids_ratio():
    s = Search({"lr": [1e-3, 3e-3, 1e-2], "r": [8, 16]}, extend_edges=2)
    pts = [{"lr": lr, "r": r} for lr in (1e-3, 3e-3, 1e-2) for r in (8, 16)]
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.45]  # best: lr 1e-2 (top edge), r 8 (bottom edge)
    assert edge_point(s, list(zip(pts, scores, strict=True))) == {"lr": 0.0333333, "r": 8}
    # once lr's extension is tried and wins, the next slot goes one further step
    assert edge_point(s, [*zip(pts, scores, strict=True), ({"lr": 0.0333333, "r": 8}, 0.6)])["lr"] == 0.111111
    # a best point inside the values tried: no edge to extend, the slot is that point again
    inner = [0.1, 0.2, 0.9, 0.4, 0.5, 0.45]
    assert edge_point(s, list(zip(pts, inner, strict=True)))["lr"] == 3e-3
    # the bottom edge, and whole numbers stay whole
    assert edge_point(Search({"r": [8, 16]}, extend_edges=1), [({"r": 8}, 0.9), ({"r": 16}, 0.1)]) == {"r": 4}


def test_the_final_says_what_was_tried_beyond_and_when_the_limit_was_hit():
    s = Search({"lr": [1e-3, 3e-3, 1e-2]}, extend_edges=1)
    rows = [{"point": {"lr": v}} for v in (1e-3, 3e-3, 1e-2, 0.0333333)]
    hit = edge_summary(s, {"lr": 0.0333333}, rows)
    assert hit == {"edge": ["lr"], "extended": {"lr": [0.0333333]}, "edge_limit": 1}
    assert edge_summary(s, {"lr": 1e-2}, rows) == {"edge": [], "extended": {"lr": [0.0333333]}}
    # without the option: the edge of the grid as before
    assert edge_summary(Search({"lr": [1e-3, 3e-3, 1e-2]}), {"lr": 1e-2}, rows[:3]) == {"edge": ["lr"]}


def test_the_option_off_keeps_every_run_id_and_on_adds_slots_after_the_grid(write_suite):
    plain = expand(suite(write_suite, GRID.replace("EXTRA", "")))
    assert expand(suite(write_suite, GRID.replace("EXTRA", ", extend_edges: 0"), name="zero.yaml")) == plain
    extended = expand(suite(write_suite, GRID.replace("EXTRA", ", extend_edges: 2"), name="two.yaml"))
    slots = [r for r in extended if r.role == "trial" and r.point is None]
    assert [r.trial_index for r in slots] == [3, 4] and all(not r.resolved for r in slots)
    grid = [r.run_id for r in extended if r.role == "trial" and r.point is not None]
    assert set(grid) <= set(slots[0].depends_on) and slots[0].run_id in slots[1].depends_on
    assert {r.run_id for r in extended if r.role == "trial" and r.point is not None} == \
        {r.run_id for r in plain if r.role == "trial"}  # the grid's own trials are the same runs


def test_extend_edges_is_checked_at_validate(write_suite):
    assert "whole number from 0 to 10" in errors(write_suite, GRID.replace("EXTRA", ", extend_edges: -1"))
    assert "extends a grid's edges" in errors(
        write_suite, "  - full_finetune: {search: {method: random, trials: 2, lr: {log_uniform: [1e-4, 1e-2]}, "
        "extend_edges: 1}}\n")
    assert "no key of this grid can be extended" in errors(
        write_suite, "  - full_finetune: {search: {optimizer: [adamw, sgd], extend_edges: 1}}\n")


def test_the_driver_draws_a_slot_from_the_trials_before_it(write_suite):
    runs = expand(suite(write_suite, GRID.replace("EXTRA", ", extend_edges: 1")))
    trials = [r for r in runs if r.role == "trial" and r.point is not None]
    slot = next(r for r in runs if r.role == "trial" and r.point is None)
    top = {t.run_id: record(t, val, 0.5) for t, val in zip(trials, (0.2, 0.5, 0.7), strict=True)}
    job = Graph(runs, dict(top)).prepare(slot)
    assert isinstance(job, Job) and job.spec.point == {"lr": 0.0333333} and job.spec.train["lr"] == 0.0333333
    inner = {t.run_id: record(t, val, 0.5) for t, val in zip(trials, (0.2, 0.9, 0.7), strict=True)}
    again = Graph(runs, dict(inner)).prepare(slot)
    assert isinstance(again, Job) and again.spec.point == {"lr": 3e-3}  # no edge: the best point


def test_a_run_extends_then_chooses_among_all_and_a_needless_slot_trains_nothing(write_suite, tmp_path):
    spec = suite(write_suite, GRID.replace("EXTRA", ", extend_edges: 2"))
    done = api.run(spec, "local", tmp_path / "r").done
    assert all(r.status == "ok" for r in done)
    trials = sorted((r for r in done if r.role == "trial"), key=lambda r: r.search["index"])
    assert len(trials) == 5
    seen = [t.search["point"]["lr"] for t in trials[:3]]
    for t in trials[3:]:  # each slot: one step past the values tried before it, or a point already run
        lr = t.search["point"]["lr"]
        assert lr < min(seen) or lr > max(seen) or (lr in seen and t.config["notes"].get("reused_run"))
        seen.append(lr)
    final = next(r for r in done if r.role == "final")
    beyond = [v for v in seen if v not in (1e-3, 3e-3, 1e-2)]
    assert final.search.get("extended", {}).get("lr", []) == sorted(set(beyond), key=beyond.index)
    assert final.search["chosen"]["lr"] in seen


def test_the_report_shows_the_values_beyond_the_grid_and_names_the_limit():
    from harness.report.aggregate import aggregate
    from harness.report.markdown import render
    from tests.factories import make_record

    search = {"space": {"lr": [1e-3, 3e-3, 1e-2]}, "method": "grid", "selection_seeds": [0], "extend_edges": 1,
              "chosen": {"lr": 0.0333333}, "val": 0.9, "edge": ["lr"], "extended": {"lr": [0.0333333]},
              "edge_limit": 1, "trials": [], "tuning_wall_s": 1.0}
    md = render(aggregate([make_record("full_finetune", seed, 0.9, search=search) for seed in range(2)]))
    assert "lr ∈ [0.001, 0.003, 0.01] + beyond [0.0333333] → **0.0333333** ⇥" in md
    assert "⇥ lr=0.0333333 at the grid's edge, extended 1 step(s) beyond it: the suite's limit (extend_edges: 1)" in md
