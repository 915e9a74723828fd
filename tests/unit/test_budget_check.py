"""Budgets measured adequate (``budget_check: true``): the plan adds, per trained cell, its first
seed at twice the epochs (the chosen point of a search); the report marks ↗ when that gains more on
validation than the noise, whatever the schedule, and names the budget the cell ranks at."""

from __future__ import annotations

import numpy as np
import pytest

from harness import api
from harness.errors import ConfigError
from harness.metrics import Predictions
from harness.plan import expand
from harness.predictions import SplitPredictions, encode, reference
from harness.report.aggregate import aggregate
from harness.report.evidence import budget_checks
from harness.report.markdown import marks, render
from harness.suite import load_suite
from tests.conftest import TINY_SUITE
from tests.factories import make_record

# the probe (L-BFGS, no epochs), a searched fine-tune and scratch
SUITE = TINY_SUITE.replace("full_finetune: {lr: 3e-3}", "full_finetune: {search: {lr: [1e-3, 3e-3]}}")


def test_the_option_off_leaves_the_plan_as_it_was_and_on_adds_one_doubled_run_per_trained_cell(write_suite):
    plain = expand(load_suite(write_suite(SUITE)))
    assert expand(load_suite(write_suite(SUITE + "budget_check: false\n", "off.yaml"))) == plain
    checked = expand(load_suite(write_suite(SUITE + "budget_check: true\n", "on.yaml")))
    extra = [r for r in checked if r.run_id not in {p.run_id for p in plain}]
    assert {r.run_id for r in plain} <= {r.run_id for r in checked}
    assert sorted(r.label for r in extra) == ["full_finetune", "scratch"]  # the L-BFGS probe has no epochs
    for r in extra:
        assert r.role == "aux" and r.seed == 0 and r.budget_check == 2 and r.train["epochs"] == 2
        assert ".x2.s0-" in r.run_id
    tuned = next(r for r in extra if r.label == "full_finetune")
    trials = [r.run_id for r in checked if r.role == "trial"]
    assert not tuned.resolved and set(tuned.depends_on) == set(trials)  # at the point the trials choose


def test_a_cell_that_searches_its_budget_gets_no_check_and_the_key_must_be_a_bool(write_suite):
    text = SUITE.replace("{search: {lr: [1e-3, 3e-3]}}", "{search: {epochs: [1, 2]}}") + "budget_check: true\n"
    assert [r.label for r in expand(load_suite(write_suite(text))) if r.budget_check] == ["scratch"]
    with pytest.raises(ConfigError, match="budget_check"):
        load_suite(write_suite(SUITE + "budget_check: yes please\n", "bad.yaml"))


def test_the_check_runs_at_the_chosen_point_and_the_report_reads_it(write_suite, tmp_path):
    results = tmp_path / "results"
    done = api.run(write_suite(SUITE + "budget_check: true\n"), "local", results).done
    assert all(r.status == "ok" for r in done)
    checks = {r.label: r for r in done if r.budget.get("check")}
    finals = {r.label: r for r in done if r.role == "final" and r.seed == 0}
    assert set(checks) == {"full_finetune", "scratch"}
    for label, check in checks.items():
        assert check.budget["epochs"] == 2 * finals[label].budget["epochs"] and check.seed == 0
        assert check.config["train"]["lr"] == finals[label].config["train"]["lr"]  # the chosen point
    assert checks["full_finetune"].search["chosen"] == finals["full_finetune"].search["chosen"]
    md = api.report(results, tmp_path / "r.md", plots=False, exports=False)[0].markdown.read_text()
    assert "Cells with a budget check" in md  # the legend says what ↗ means for them
    assert sum(r.adequacy is not None for r in _rows(results)) == 2


def _rows(results):
    from harness.records import scan

    records = scan(results)[0]
    rows = aggregate(records)
    budget_checks(rows, records, results)
    return rows


# ---------------------------------------------------------------- the verdict, on fabricated runs

N_VAL = 400
BUDGET = {"epochs": 3, "max_steps": None, "steps": 90, "examples_seen": 2880, "optimizer": "adamw", "lr": 0.001,
          "precision": "fp32", "reference": {"epochs": 3}, "differs": []}


def val_run(results, label, seed, right: int, role="final", factor=None):
    """A record whose kept validation predictions get ``right`` of N_VAL examples right, with a
    learning curve that still rises by 5 points at its last evaluation."""
    keys = np.array([f"v{i}" for i in range(N_VAL)])
    y_true = np.zeros(N_VAL, dtype=np.int64)
    y_pred = np.where(np.arange(N_VAL) < right, 0, 1).astype(np.int64)
    test = SplitPredictions(keys[:50], Predictions(y_true[:50], y_pred[:50], ["a", "b"]))
    data = encode({"val": SplitPredictions(keys, Predictions(y_true, y_pred, ["a", "b"])), "test": test})
    run_id = f"p.{label}{'.x2' if factor else ''}.s{seed}"
    (results / f"{run_id}.preds.npz").write_bytes(data)
    budget = {**BUDGET, "epochs": 3 * (factor or 1), **({"check": {"factor": factor}} if factor else {})}
    acc = right / N_VAL
    return make_record(label, seed, float(np.mean(y_true[:50] == y_pred[:50])), run_id=run_id, role=role,
                       budget=budget, predictions=reference(data, run_id),
                       extra={"val": {"accuracy": acc}},
                       curve=[{"epoch": 1, "val_accuracy": acc - 0.10}, {"epoch": 2, "val_accuracy": acc - 0.05},
                              {"epoch": 3, "val_accuracy": acc}])


def test_twice_the_budget_gaining_beyond_the_noise_is_marked_and_names_the_limit(tmp_path):
    records = []
    for seed in range(2):
        records += [val_run(tmp_path, "short", seed, 240), val_run(tmp_path, "enough", seed, 300)]
    records += [val_run(tmp_path, "short", 0, 360, role="aux", factor=2),  # +30 points at 2×: inadequate
                val_run(tmp_path, "enough", 0, 302, role="aux", factor=2)]  # +0.5 point: within the noise
    rows = aggregate(records)
    by = {r.label: r for r in rows}
    # the old rule: both curves rose by 5 points at their last evaluation, so both were ↗
    assert by["short"].still_rising and by["enough"].still_rising
    assert budget_checks(rows, records, tmp_path) == 2
    short, enough = by["short"], by["enough"]
    assert short.adequacy.adequate is False and short.still_rising
    assert enough.adequacy.adequate is True and not enough.still_rising
    assert short.adequacy.gain.mean == pytest.approx(0.30) and short.adequacy.limit == "epochs 3"
    md = render(rows)
    line = next(x for x in md.splitlines() if x.startswith("| ") and "`short`" in x and "↗ budget" in x)
    assert "2× the epochs gains +30.00" in line and "the suite's limit (epochs 3)" in line
    table = md[md.index("Budget and tuning"):]
    assert "| **no** ↗ (2×: +30.00 [" in table and "| yes (2×: +0.50 [" in table
    assert "↗" in marks(short) and "↗" not in marks(enough)  # the summary table's marks too


def test_twice_the_budget_losing_beyond_the_noise_is_marked_as_a_score_that_needs_its_stop(tmp_path):
    """↘: a cell whose 2× run scores *lower* than the noise allows (DANN on shifted digits) is
    adequate (more budget does not help) but its score holds only at the suite's limit; a loss
    within the noise gets no mark."""
    records = []
    for seed in range(2):
        records += [val_run(tmp_path, "drifts", seed, 300), val_run(tmp_path, "steady", seed, 300)]
    records += [val_run(tmp_path, "drifts", 0, 200, role="aux", factor=2),  # −25 points at 2×
                val_run(tmp_path, "steady", 0, 298, role="aux", factor=2)]  # −0.5 point: within the noise
    rows = aggregate(records)
    assert budget_checks(rows, records, tmp_path) == 2
    by = {r.label: r for r in rows}
    drifts, steady = by["drifts"], by["steady"]
    assert drifts.adequacy.adequate is True and drifts.adequacy.degrades and drifts.falls_with_budget
    assert steady.adequacy.adequate is True and not steady.adequacy.degrades and not steady.falls_with_budget
    assert not drifts.still_rising
    assert "↘" in marks(drifts) and "↗" not in marks(drifts) and "↘" not in marks(steady)
    md = render(rows)
    line = next(x for x in md.splitlines() if x.startswith("| ") and "`drifts`" in x and "↘ budget" in x)
    assert "2× the epochs changes val by -25.00 [" in line and "stopping at the suite's limit (epochs 3)" in line
    table = md[md.index("Budget and tuning"):]
    assert "| yes ↘ (2×: -25.00 [" in table and "| yes (2×: -0.50 [" in table
    assert "↘: that run scored *lower*" in md  # the legend says what it means
