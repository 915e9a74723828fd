"""The learning-curve plot says why a cell has no curve (issue 31): a closed-form fit has no epochs."""

from __future__ import annotations

import pytest

from harness.report.aggregate import aggregate
from harness.report.markdown import render
from harness.report.plots import _canvas_of, curve_plot, no_curve, no_curve_note
from tests.factories import make_record

CURVE = [{"epoch": 1, "val_accuracy": 0.8}, {"epoch": 2, "val_accuracy": 0.9}]


def rows():
    out = []
    for seed in range(2):
        out += [make_record("full_finetune", seed, 0.95, curve=CURVE, budget={"epochs": 2, "steps": 40}),
                make_record("linear_probe", seed, 0.93, budget={"epochs": 2, "steps": 0}),  # L-BFGS: no steps
                make_record("sa", seed, 0.5, strategy="subspace_alignment", budget={"epochs": 2, "steps": 0}),
                make_record("lora", seed, 0.9, budget={"epochs": 2, "steps": 40})]  # trained, curve not recorded
    return aggregate(out)


def test_cells_without_a_curve_are_listed_with_why():
    assert dict(no_curve(rows())) == {
        "linear_probe": "closed-form fit (L-BFGS logistic regression on frozen features): no epochs",
        "sa": "closed-form fit (PCA alignment of frozen features, then the probe's L-BFGS fit): no epochs",
        "lora": "no validation metric recorded per epoch"}
    assert no_curve([r for r in rows() if r.label == "full_finetune"]) == []


def test_a_pair_with_no_curve_at_all_lists_only_its_closed_form_cells():
    only = aggregate([make_record("linear_probe", 0, 0.9, budget={"steps": 0}), make_record("lora", 0, 0.9)])
    assert [label for label, _ in no_curve(only)] == ["linear_probe"]


def test_the_markdown_beside_the_plot_says_why():
    board = render(rows(), assets={"p": {"curve": "s/p-curve.png"}})
    after = board.split("(s/p-curve.png)")[1]
    assert after.lstrip("\n").startswith(no_curve_note(rows()))
    assert "No learning curve for `linear_probe` (closed-form fit (L-BFGS logistic regression on frozen features): " \
           "no epochs)" in after


def test_the_figure_carries_the_note_under_its_key(tmp_path):
    pytest.importorskip("matplotlib")
    assert curve_plot(rows(), tmp_path / "curve.png") is not None
    _, ax = _canvas_of("curve")
    texts = [t.get_text() for t in ax.texts]
    assert texts[:1] == ["full_finetune"]  # the key: the one cell with a curve
    assert texts[1:] == ["no curve:", "linear_probe: closed form, no epochs", "lora: no curve recorded",
                         "sa: closed form, no epochs"]


def test_the_note_is_part_of_what_the_plot_cache_hashes():
    from dataclasses import replace

    from harness.report.plots import digest, styles_for

    shown = rows()
    styles = styles_for(r.label for r in shown)
    trained = [replace(r, budget={**r.budget, "steps": 40}) if r.label in ("linear_probe", "sa") else r for r in shown]
    assert dict(no_curve(trained))["linear_probe"] == "no validation metric recorded per epoch"  # not closed form
    assert digest("curve", shown, styles) != digest("curve", trained, styles)  # another note: redrawn
