"""The closed-form rows (the L-BFGS probe, subspace alignment) choose their C without target labels
when told to (``select_by``), and record every C's label-free validators and test score so the
domain report can show what each validator would have chosen, as it does for searched rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.registry import TASKS
from harness.report.aggregate import aggregate
from harness.report.domain import c_trials, selection_table, shifts
from harness.run.execute import ExecOptions, execute
from harness.run.logistic import select_c
from harness.strategies.linear_probe import ProbeParams
from tests.factories import make_record
from tests.unit.test_strategies_core import feature_data
from tests.unit.test_strategies_transfer import CPU, config_errors, one, plan

GRID = [1e-3, 0.1, 10.0]


def toy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(90, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=90) > 0).astype(np.int64)
    return feature_data((x[:60], y[:60]), (x[60:], y[60:]), (x[:10], y[:10]))


def test_select_c_chooses_by_the_named_validator_and_keeps_every_cs_scores():
    data, task = toy(), TASKS.get("image-classification")
    calls = []

    def validate():  # a validator that prefers the middle C, whatever the validation split says
        c = GRID[len(calls)]
        calls.append(c)
        return {"validators": {"entropy": -abs(np.log10(c) + 1), "snd": None}, "test": 0.5}

    chosen, scores, _ = select_c(torch.nn.Linear(3, 2), data, task, ProbeParams(c_grid=GRID, refit=False), CPU,
                                 validate, "entropy")
    assert chosen == 0.1 and calls == GRID
    assert [s["validators"]["entropy"] for s in scores] == [-2.0, 0.0, -2.0]
    assert all(s["validators"]["oracle"] == round(s["val_accuracy"], 6) and s["test"] == 0.5 for s in scores)
    # the oracle (the default) chooses on the validation split as before: the validators only ride along
    calls.clear()
    by_val, scores, _ = select_c(torch.nn.Linear(3, 2), data, task, ProbeParams(c_grid=GRID, refit=False), CPU,
                                 validate)
    best = max(s["val_accuracy"] for s in scores)
    assert by_val == next(s["C"] for s in scores if s["val_accuracy"] == best)
    calls.clear()
    with pytest.raises(ValueError, match="select_by: snd scored no C"):
        select_c(torch.nn.Linear(3, 2), data, task, ProbeParams(c_grid=GRID, refit=False), CPU, validate, "snd")


DIGITS = """\
pairs:
  - id: digits
    source: {model: test/tiny_cnn}
    target: {dataset: sklearn/digits, task: image-classification, image_size: 8, unlabeled: shifted, eval_domain: shifted}
"""


@pytest.mark.parametrize("strategy", ["linear_probe", "subspace_alignment"])
def test_a_closed_form_row_chooses_c_by_a_label_free_validator_end_to_end(write_suite, tmp_path, strategy):
    runs = plan(write_suite, f"  - {strategy}: {{c_grid: {GRID}, select_by: entropy}}\n"
                f"  - {strategy}: {{label: oracle, c_grid: {GRID}}}\n", pairs=DIGITS)
    by_entropy = execute(one(runs, "digits", strategy), ExecOptions(cache_dir=tmp_path))
    assert by_entropy.status == "ok", by_entropy.error
    fit = by_entropy.budget["closed_form"]
    choices = fit["choices"]
    assert fit["select_by"] == "entropy" and [c["C"] for c in choices] == GRID
    for c in choices:  # every C measured by every validator, and its test score kept
        assert set(c["validators"]) == {"oracle", "source_val", "dev", "entropy", "snd"}
        assert all(isinstance(v, float) for v in c["validators"].values()) and 0 <= c["test"] <= 1
    best = max(choices, key=lambda c: c["validators"]["entropy"])
    assert fit["C"] == best["C"]
    # the chosen head is the one scored: no refit across domains, so its test score is the record's
    assert by_entropy.metrics["accuracy"] == pytest.approx(best["test"], abs=1e-6)
    assert by_entropy.metrics["validators"] == best["validators"]
    assert by_entropy.cost["validators_s"] > 0  # measured beside the fit, not charged to it
    oracle = execute(one(runs, "digits", "oracle"), ExecOptions(cache_dir=tmp_path))
    o = oracle.budget["closed_form"]
    assert o["select_by"] == "oracle" and o["choices"] == choices  # the same fits, another choice
    top = max(c["validators"]["oracle"] for c in choices)
    assert o["C"] == next(c["C"] for c in choices if c["validators"]["oracle"] == top)


def test_select_by_on_a_probe_needs_unlabeled_data(write_suite):
    pairs = DIGITS.replace(", unlabeled: shifted, eval_domain: shifted", "")
    msg = config_errors(write_suite, "  - linear_probe: {select_by: dev}\n", pairs=pairs)
    assert "select_by: dev chooses C with a validator that reads the unlabeled target data" in msg


def test_the_domain_report_shows_what_each_validator_would_choose_among_a_probes_cs():
    def validators(oracle, free):
        return {"oracle": oracle, "source_val": free, "dev": free, "entropy": -free, "snd": free}

    choices = [{"C": 0.01, "validators": validators(0.30, 0.9), "test": 0.20},
               {"C": 1.0, "validators": validators(0.50, 0.1), "test": 0.40}]
    recs = [make_record("linear_probe", s, 0.40, pair="shift", suite="domain", strategy="linear_probe",
                        budget={"closed_form": {"solver": "L-BFGS logistic regression", "C": 1.0,
                                                "select_by": "oracle", "choices": choices}},
                        data={"fingerprint": "f", "train_domain": "original", "eval_domain": "shifted",
                              "unlabeled_domain": "shifted", "source": "packaged/x", "dataset": "sklearn/digits"})
            for s in range(2)]
    recs += [make_record("source_only", s, 0.3, pair="shift", suite="domain", strategy="full_finetune",
                         data={"fingerprint": "f", "train_domain": "original", "eval_domain": "shifted",
                               "source": "packaged/x", "dataset": "sklearn/digits"}) for s in range(2)]
    group = next(iter(shifts(aggregate(recs)).values()))
    probe = next(r for r in group if r.label == "linear_probe")
    assert [t["point"] for t in c_trials(probe)] == [{"C": 0.01}, {"C": 1.0}]
    line = next(x for x in selection_table(group) if "`linear_probe`" in x)
    cells = [c.strip() for c in line.strip("|").split("|")]
    # oracle: C = 1 (val 0.50) → test 40.00; source_val, dev, snd: C = 0.01 → 20.00; entropy: C = 1 → 40.00
    assert cells[3:] == ["40.00 (C=1)", "20.00 (C=0.01)", "20.00 (C=0.01)", "40.00 (C=1)", "20.00 (C=0.01)",
                         "+15.00"]
