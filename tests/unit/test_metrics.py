"""Metrics against hand-computed answers (numpy and seqeval; no Hub)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import Predictions, accuracy, compute, macro_f1, seqeval_strict


def test_accuracy_and_macro_f1_by_hand():
    p = Predictions(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), ["a", "b", "c"])
    assert accuracy(p)["accuracy"] == pytest.approx(3 / 5)
    # a: tp1 fp1 fn1 → 0.5; b: tp2 fp1 fn0 → 0.8; c: tp0 → 0
    out = macro_f1(p)
    assert out["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert out["per_label"] == pytest.approx({"a": 0.5, "b": 0.8, "c": 0.0})


def ner(gold: list[list[str]], pred: list[list[str]], kept: list[int] | None = None) -> Predictions:
    names = ["O", "B-per", "I-per", "B-loc", "I-loc"]
    ids = {n: i for i, n in enumerate(names)}
    kept = kept or [len(s) for s in gold]
    y_true, y_pred, seq = [], [], []
    for s, (g, p) in enumerate(zip(gold, pred, strict=False)):
        for j in range(kept[s]):
            y_true.append(ids[g[j]])
            y_pred.append(ids[p[j]])
            seq.append(s)
    return Predictions(np.array(y_true), np.array(y_pred), names, np.array(seq), gold)


def test_seqeval_entity_level_strict():
    gold = [["B-per", "I-per", "O", "B-loc"], ["O", "B-loc", "I-loc"]]
    pred = [["B-per", "I-per", "O", "O"], ["O", "I-loc", "I-loc"]]  # strict IOB2: I- start is not an entity
    out = seqeval_strict(ner(gold, pred))
    assert out["precision"] == pytest.approx(1.0)  # 1 predicted, 1 right
    assert out["recall"] == pytest.approx(1 / 3)  # 3 gold entities
    assert out["f1"] == pytest.approx(0.5)
    assert out["per_label"]["per"]["f1"] == pytest.approx(1.0)
    assert out["per_label"]["loc"]["support"] == 2


def test_entity_cut_by_truncation_counts_as_a_miss():
    gold = [["O", "O", "B-per", "I-per"]]
    # The model saw only the first 3 words and tagged the entity's first word right.
    out = seqeval_strict(ner(gold, [["O", "O", "B-per", "I-per"]], kept=[3]))
    assert out["recall"] == 0.0  # B-per alone ≠ the gold span B-per I-per
    assert out["f1"] == 0.0


def test_compute_merges_outputs():
    p = Predictions(np.array([0, 1]), np.array([0, 1]), ["x", "y"])
    out = compute(["accuracy", "macro_f1"], p)
    assert out["accuracy"] == 1.0 and out["macro_f1"] == 1.0 and set(out["per_label"]) == {"x", "y"}
