"""Sub-word label alignment, truncation accounting and entity scoring on hand-made examples
whose answers are known; CoNLL reader errors name file and line."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import Predictions, seqeval_strict
from harness.registry import SOURCES
from harness.targets.tokens import ConllError, align, encode_splits, entities, iob1_to_iob2, read_conll


@pytest.fixture(scope="module")
def tiny():
    return SOURCES.get("test").build("tiny_bert", {"max_length": 8}, pretrained=True)


def test_first_subword_carries_the_label(tiny):
    tok = tiny.input_spec.tokenizer
    ids = {"O": 0, "B-per": 1, "I-per": 2}
    # "john" → j ##o ##h ##n (4 pieces); "a" → 1 piece; [CLS] … [SEP] around
    input_ids, labels = align(tok, ["john", "a"], ["B-per", "O"], ids, max_length=32)
    assert tok.convert_ids_to_tokens(input_ids) == ["[CLS]", "j", "##o", "##h", "##n", "a", "[SEP]"]
    assert labels == [-100, 1, -100, -100, -100, 0, -100]


@pytest.mark.parametrize("tags, precision, recall", [
    # the location lies wholly beyond the cut: a miss (recall ½), no false positive
    (["B-per", "I-per", "O", "O", "O", "O", "B-loc", "I-loc"], 1.0, 0.5),
    # the cut falls inside the location: the model can only predict its first word, a wrong span
    (["B-per", "I-per", "O", "O", "O", "B-loc", "I-loc", "O"], 0.5, 0.5),
])
def test_truncation_keeps_gold_and_counts_cut_entities(tiny, tags, precision, recall):
    words = list("abcdefgh")  # one piece each; max_length 8 keeps 6 words
    names, splits, pre = encode_splits({"test": [(words, tags)]}, tiny)
    s = splits["test"]
    assert len(s.input_ids[0]) == 8
    assert sum(x != -100 for x in s.labels[0]) == 6
    assert s.sequences[0] == tags  # gold keeps every word
    assert pre["truncated_sentences"] == 1 and pre["truncated_entities"] == 1
    # Perfect predictions on the 6 kept words; the 2 cut words are predicted O.
    kept = [x for x in s.labels[0] if x != -100]
    p = Predictions(np.array(kept), np.array(kept), names, np.zeros(len(kept), int), s.sequences)
    out = seqeval_strict(p)
    assert out["precision"] == pytest.approx(precision)
    assert out["recall"] == pytest.approx(recall)
    assert out["per_label"]["loc"]["recall"] == 0.0 and out["per_label"]["per"]["f1"] == 1.0


def test_scores_on_a_known_answer(tiny):
    gold = [(["a", "b", "c"], ["B-per", "I-per", "O"]), (["d", "e"], ["B-loc", "O"])]
    names, splits, _ = encode_splits({"test": gold}, tiny)
    ids = {n: i for i, n in enumerate(names)}
    # predict the person with the wrong boundary, the location right
    pred = [["B-per", "O", "O"], ["B-loc", "O"]]
    y_true = [ids[t] for _, ts in gold for t in ts]
    y_pred = [ids[t] for ts in pred for t in ts]
    out = seqeval_strict(Predictions(np.array(y_true), np.array(y_pred), names, np.array([0, 0, 0, 1, 1]),
                                     splits["test"].sequences))
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == pytest.approx(0.5)


def test_iob1_is_normalised_and_counted(tiny):
    # CoNLL-2003's original IOB1: entities start with I-, B- only between same-type neighbours
    tags = ["I-per", "I-per", "O", "I-loc", "B-loc"]
    assert iob1_to_iob2(tags) == ["B-per", "I-per", "O", "B-loc", "B-loc"]
    _, splits, pre = encode_splits({"train": [(list("abcde"), tags)]}, tiny)
    assert splits["train"].sequences[0] == ["B-per", "I-per", "O", "B-loc"] + ["B-loc"]
    assert pre["iob_tags_repaired"] == 2
    assert entities(["B-per", "I-per", "O", "B-loc", "B-loc", "I-loc"]) == [(0, 2), (3, 4), (4, 6)]


@pytest.mark.parametrize("body, where, message", [
    ("EU B-ORG\nrejects\n", ":2:", "expected at least 2 columns"),
    ("EU B-ORG\nrejects X-MISC\n", ":2:", "not IOB2"),
    ("-DOCSTART- O\n\n\n", "", "no sentences found"),
])
def test_conll_errors_name_file_and_line(tmp_path, body, where, message):
    path = tmp_path / "bad.conll"
    path.write_text(body)
    with pytest.raises(ConllError, match=message) as e:
        read_conll(path)
    assert str(e.value).startswith(f"{path}{where}")


def test_conll_column_choice_and_docstart(tmp_path):
    path = tmp_path / "four.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP I-PER\n")
    sents = read_conll(path, token_col=0, tag_col=3)
    assert sents == [(["EU", "rejects"], ["I-ORG", "O"]), (["Peter"], ["I-PER"])]
    with pytest.raises(ConllError, match=r"four.conll:3: tag 'B-NP' is not IOB2|four.conll:3: tag 'NNP'"):
        read_conll(path, token_col=0, tag_col=1)


def _lengths_split(n: int = 400):
    from harness.targets.base import TokenSplit

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, n)
    ids = [[5] * int(k) for k in lengths]
    return TokenSplit(ids, [[0] * int(k) for k in lengths], [["w"] * int(k) for k in lengths], pad_id=0)


def test_training_batches_are_plainly_shuffled_unless_grouped_by_length():
    import torch

    split = _lengths_split()

    def run(group):
        batches = list(split.batches(16, shuffle=True, generator=torch.Generator().manual_seed(1), group_by_length=group))
        assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(len(split)))  # each once
        padded = sum(b["input_ids"].numel() for b in batches)
        return batches, padded

    plain, plain_padded = run(False)
    # the recipe's sampler: a permutation of the split cut into consecutive batches
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(1)).tolist()
    assert [b["index"].tolist() for b in plain] == [perm[k:k + 16] for k in range(0, len(split), 16)]
    grouped, grouped_padded = run(True)
    real = sum(len(x) for x in split.input_ids)
    assert grouped_padded < 0.8 * plain_padded and grouped_padded < 1.1 * real
    spans = [max(len(split.input_ids[i]) for i in b["index"].tolist()) - min(len(split.input_ids[i]) for i in b["index"].tolist())
             for b in grouped]
    assert max(spans) <= 5  # like lengths in every batch
