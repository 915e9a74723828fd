"""Metrics: pure functions of gold and predicted labels (numpy, seqeval); no Hub look-ups.

Each metric takes a :class:`Predictions` and returns a flat ``{name: float}`` dict (plus an
optional nested ``per_label`` dict), so records and reports treat every metric alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.registry import METRICS


@dataclass(frozen=True)
class Predictions:
    """What an evaluation produced.

    For classification, ``y_true``/``y_pred`` are label ids per example. For token tasks
    they are label ids per *word* (first sub-word), and ``sequences`` holds, per sentence,
    the gold tag strings of every word (including words cut by truncation) so metrics can
    rebuild whole sentences; ``seq_index`` says which sentence each word belongs to.
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    label_names: Sequence[str]
    seq_index: np.ndarray | None = None
    sequences: Sequence[Sequence[str]] | None = None


@METRICS.register("accuracy", description="fraction of examples whose predicted label is the gold label")
def accuracy(p: Predictions) -> dict[str, float]:
    if len(p.y_true) == 0:
        return {"accuracy": float("nan")}
    return {"accuracy": float(np.mean(p.y_true == p.y_pred))}


@METRICS.register("macro_f1", description="unweighted mean of per-class F1 over the classes present in gold or predictions")
def macro_f1(p: Predictions) -> dict:
    labels = np.union1d(np.unique(p.y_true), np.unique(p.y_pred))
    per_label: dict[str, float] = {}
    f1s = []
    for c in labels:
        tp = float(np.sum((p.y_pred == c) & (p.y_true == c)))
        fp = float(np.sum((p.y_pred == c) & (p.y_true != c)))
        fn = float(np.sum((p.y_pred != c) & (p.y_true == c)))
        f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
        f1s.append(f1)
        per_label[str(p.label_names[int(c)])] = f1
    return {"macro_f1": float(np.mean(f1s)) if f1s else float("nan"), "per_label": per_label}


def word_sequences(p: Predictions) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag sequences per sentence.

    Words beyond the model's ``max_length`` have no prediction; they are predicted ``O``, so
    an entity cut by truncation counts as a miss (never silently dropped from the gold).
    """
    assert p.sequences is not None and p.seq_index is not None, "token metrics need sequences"
    names = list(p.label_names)
    preds: list[list[str]] = [[] for _ in p.sequences]
    for s, y in zip(p.seq_index.tolist(), p.y_pred.tolist(), strict=False):
        preds[s].append(names[y])
    gold = [list(seq) for seq in p.sequences]
    for i, seq in enumerate(gold):
        preds[i] = preds[i][: len(seq)] + ["O"] * max(0, len(seq) - len(preds[i]))
    return gold, preds


def _seqeval(p: Predictions, strict: bool) -> dict:
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    gold, preds = word_sequences(p)
    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
    report = classification_report(gold, preds, output_dict=True, zero_division=0, **kwargs)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    per_label = {
        k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"], "support": int(v["support"])}
        for k, v in report.items()
        if not k.endswith(" avg")
    }
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "per_label": per_label,
    }


def entity_counts(p: Predictions, strict: bool = True) -> np.ndarray:
    """Per sentence, ``[entities predicted right, entities predicted, gold entities]`` (int, shape
    ``(sentences, 3)``), as seqeval counts them (``strict``: IOB2 strict mode, else conlleval's
    chunking). Summed over any sample of sentences they give that sample's micro F1,
    ``2·right / (predicted + gold)`` — what a bootstrap over sentences resamples."""
    gold, preds = word_sequences(p)
    if strict:
        from seqeval.scheme import IOB2, Entities

        gold_sets = [{e.to_tuple() for e in sent} for sent in Entities(gold, IOB2).entities]
        pred_sets = [{e.to_tuple() for e in sent} for sent in Entities(preds, IOB2).entities]
    else:
        from seqeval.metrics.sequence_labeling import get_entities

        gold_sets = [set(get_entities(sent)) for sent in gold]
        pred_sets = [set(get_entities(sent)) for sent in preds]
    return np.asarray([[len(g & q), len(q), len(g)] for g, q in zip(gold_sets, pred_sets, strict=True)],
                      dtype=np.int64).reshape(-1, 3)


def f1_of_counts(counts: np.ndarray) -> np.ndarray:
    """Micro F1 from summed ``[right, predicted, gold]`` counts (last axis); 0 where nothing is right."""
    right, predicted, gold = counts[..., 0], counts[..., 1], counts[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(right > 0, 2.0 * right / (predicted + gold), 0.0)


@METRICS.register("seqeval", description="entity-level precision/recall/F1 (seqeval, IOB2, strict), micro-averaged, per type")
def seqeval_strict(p: Predictions) -> dict:
    return _seqeval(p, strict=True)


@METRICS.register("seqeval_conlleval", description="entity-level P/R/F1 with conlleval's lenient chunking (seqeval default mode)")
def seqeval_lenient(p: Predictions) -> dict:
    return _seqeval(p, strict=False)


def compute(names: Sequence[str], p: Predictions) -> dict:
    """Run several metrics and merge their outputs; ``per_label`` dicts are merged too."""
    out: dict = {}
    for name in names:
        res = dict(METRICS.get(name)(p))
        per = res.pop("per_label", None)
        out.update(res)
        if per:
            out.setdefault("per_label", {}).update(per)
    return out
