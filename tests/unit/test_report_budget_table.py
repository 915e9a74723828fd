"""The budget table describes what each cell did: a closed-form fit shows its solver and chosen C,
never the loop's optimizer and lr it did not use."""

from __future__ import annotations

from harness.report.aggregate import aggregate
from harness.report.markdown import render
from tests.factories import make_record

REF = {"epochs": 3, "max_steps": None, "max_train_samples": None, "batch_size": 32, "grad_accum": 1}
LOOP = {**REF, "steps": 90, "examples_seen": 2880, "optimizer": "adamw", "lr": 0.001, "scheduler": "cosine",
        "weight_decay": 0.01, "precision": "fp32", "reference": REF, "differs": []}


def closed(solver: str, c: float) -> dict:
    return {**REF, "steps": 0, "examples_seen": 0, "closed_form": {"solver": solver, "C": c}, "precision": "fp32",
            "reference": REF, "differs": []}


def budget_rows(records) -> dict[str, str]:
    """strategy label → its line of the budget table."""
    text = render(aggregate(records))
    table = text[text.index("Budget and tuning"):text.index("Cost (mean per run)")]
    return {line.split("|")[1].strip().strip("`"): line for line in table.splitlines() if line.startswith("| `")}


def test_closed_form_cells_show_their_solver_and_chosen_c_not_an_lr():
    records = []
    for seed in range(2):
        records += [make_record("full_finetune", seed, 0.9 + seed / 100, budget=LOOP),
                    make_record("linear_probe", seed, 0.8, budget=closed("L-BFGS logistic regression", 0.316228)),
                    make_record("subspace_alignment", seed, 0.81,
                                budget=closed("PCA alignment + L-BFGS logistic regression", 3.16228))]
    rows = budget_rows(records)
    probe, sa, ft = rows["linear_probe"], rows["subspace_alignment"], rows["full_finetune"]
    assert "L-BFGS logistic regression" in probe and "C = 0.316228" in probe
    assert "PCA alignment + L-BFGS logistic regression" in sa and "C = 3.16228" in sa
    for line in (probe, sa):
        cells = [c.strip() for c in line.split("|")]
        assert cells[2] == "closed form" and "adamw" not in line and "0.001" not in line
    assert "adamw" in ft and "0.001" in ft and "| 3 |" in ft


def test_a_closed_form_record_made_before_budgets_named_the_fit_says_c_was_not_recorded():
    old = {**LOOP, "steps": 0, "examples_seen": 0}  # such records carried the loop's unused optimizer and lr
    records = [make_record("subspace_alignment", seed, 0.81, budget=old) for seed in range(2)]
    line = budget_rows(records)["subspace_alignment"]
    assert "closed form" in line and "not recorded" in line and "0.001" not in line and "adamw" not in line


def test_the_exported_frame_carries_the_closed_form_fit():
    import json

    from harness.report.export import flat

    records = [make_record("linear_probe", seed, 0.8, budget=closed("L-BFGS logistic regression", 0.316228))
               for seed in range(2)] + [make_record("full_finetune", 0, 0.9, budget=LOOP)]
    by_label = {r.label: flat(r) for r in aggregate(records)}
    assert json.loads(by_label["linear_probe"]["budget_closed_form"]) == {"solver": "L-BFGS logistic regression",
                                                                         "C": 0.316228}
    assert by_label["full_finetune"]["budget_closed_form"] is None and by_label["full_finetune"]["budget_lr"] == 0.001


def test_a_closed_form_cell_that_recorded_its_validators_shows_the_choice_not_the_grid():
    choices = [{"C": c, "validators": {"oracle": 0.5, "entropy": -1.0}, "test": 0.4} for c in (0.01, 1.0)]
    by_val = {**closed("L-BFGS logistic regression", 1.0)}
    by_val["closed_form"] = {**by_val["closed_form"], "select_by": "oracle", "choices": choices}
    by_dev = {**by_val, "closed_form": {**by_val["closed_form"], "select_by": "dev"}}
    records = [make_record("linear_probe", 0, 0.8, budget=by_val), make_record("probe_dev", 0, 0.7,
                                                                               strategy="linear_probe", budget=by_dev)]
    rows = budget_rows(records)
    assert "C = 1 |" in rows["linear_probe"] and "validators" not in rows["linear_probe"]
    dev = next(line for key, line in rows.items() if key.startswith("probe_dev"))
    assert "C = 1, select_by = dev |" in dev and "validators" not in dev
