"""``hftext/…``: text/label columns from files in the Hub's on-disk formats (no network), first-token
pooling, and a whole run from suite file to record with accuracy and macro-F1."""

from __future__ import annotations

import json

import pytest
import torch

datasets = pytest.importorskip("datasets")

from harness.registry import SOURCES, TARGETS  # noqa: E402
from harness.sources.nets import TransferModel, pool_features  # noqa: E402
from harness.targets.text import HFDataError  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return SOURCES.get("test").build("tiny_bert", {"max_length": 16}, pretrained=True)


def write_json(path, n=40):
    rows = [{"sentence": f"the {'cat' if i % 2 else 'dog'} {i}", "other": "a b", "label": "pos" if i % 2 else "neg"}
            for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def test_string_labels_from_json_with_carved_splits(tmp_path, tiny):
    f = write_json(tmp_path / "d.json")
    data = TARGETS.get("hftext").load("json", {"data_files": f, "text_column": "sentence"}, "text-classification", tiny)
    assert data.label_names == ["neg", "pos"]
    assert sum(len(s) for s in data.splits.values()) == 40
    batch = next(data.splits["train"].batches(4))
    assert batch["labels"].shape == (4,)  # one label per text
    tok = tiny.input_spec.tokenizer
    i = int(batch["index"][0])
    text = tok.decode(data.splits["train"].input_ids[i], skip_special_tokens=True)
    assert ("cat" in text) == (data.label_names[int(batch["labels"][0])] == "pos")
    assert data.preprocessing["pooling"] == "first token ([CLS])"


def test_classlabel_parquet_keeps_the_dataset_splits_and_pairs(tmp_path, tiny):
    from datasets import ClassLabel, Dataset, Features, Value

    feats = Features({"premise": Value("string"), "hypothesis": Value("string"),
                      "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
    files = {}
    for split, n in (("train", 6), ("validation", 3), ("test", 3)):
        files[split] = str(tmp_path / f"{split}.parquet")
        Dataset.from_dict({"premise": ["a cat"] * n, "hypothesis": ["the dog"] * n, "label": [i % 3 for i in range(n)]},
                          features=feats).to_parquet(files[split])
    params = {"data_files": files, "text_column": "premise", "text_pair_column": "hypothesis"}
    data = TARGETS.get("hftext").load("parquet", params, "text-classification", tiny)
    assert data.label_names == ["entailment", "neutral", "contradiction"]
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 6, "val": 3, "test": 3}
    tok = tiny.input_spec.tokenizer
    pieces = [t for t in tok.convert_ids_to_tokens(data.splits["test"].input_ids[0]) if not t.startswith("[")]
    assert pieces == ["a", "c", "##a", "##t", "the", "d", "##o", "##g"]  # premise, then hypothesis


def test_unlabeled_test_split_is_a_clear_error(tmp_path, tiny):
    from datasets import ClassLabel, Dataset, Features, Value

    feats = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    files = {}
    for split, labels in (("train", [0, 1]), ("test", [-1, -1])):  # GLUE-style test set without labels
        files[split] = str(tmp_path / f"{split}.parquet")
        Dataset.from_dict({"text": ["x", "y"], "label": labels}, features=feats).to_parquet(files[split])
    with pytest.raises(HFDataError, match="split 'test' row 0: label -1 is not one of 2 classes.*test_split: validation"):
        TARGETS.get("hftext").load("parquet", {"data_files": files}, "text-classification", tiny)


def test_first_token_pooling_only_for_one_label_per_example():
    feats = torch.arange(2 * 3 * 4, dtype=torch.float).reshape(2, 3, 4)
    pooled = pool_features(feats, {"labels": torch.tensor([0, 1])})
    assert torch.equal(pooled, feats[:, 0])
    assert pool_features(feats, {"labels": torch.zeros(2, 3, dtype=torch.long)}) is feats  # token task: untouched
    assert pool_features(feats[:, 0], {"labels": torch.tensor([0, 1])}).shape == (2, 4)  # already pooled


def test_transfer_model_gives_one_logit_row_per_text(tmp_path, tiny):
    f = write_json(tmp_path / "d.json", n=12)
    data = TARGETS.get("hftext").load("json", {"data_files": f, "text_column": "sentence"}, "text-classification", tiny)
    model = TransferModel(tiny, len(data.label_names))
    batch = next(data.splits["train"].batches(3))
    out = model(batch)
    assert out["logits"].shape == (3, 2) and out["features"].shape == (3, 32)


@pytest.mark.parametrize("strategy", ["full_finetune", "linear_probe"])
def test_a_run_from_suite_file_to_record(tmp_path, write_suite, strategy):
    from harness.plan import expand
    from harness.run.execute import ExecOptions, execute
    from harness.suite import load_suite

    f = write_json(tmp_path / "d.json", n=48)
    suite = write_suite(f"""
        suite: text
        seeds: [0]
        defaults: {{epochs: 1, batch_size: 8, lr: 1e-3}}
        pairs:
          - id: tiny-text
            source: {{model: test/tiny_bert, max_length: 16}}
            target: {{dataset: hftext/json, task: text-classification, data_files: {f}, text_column: sentence}}
        strategies:
          - {strategy}
        """)
    (spec,) = expand(load_suite(suite))
    rec = execute(spec, ExecOptions(cache_dir=tmp_path / "cache"))
    assert rec.status == "ok", rec.error
    assert 0.0 <= rec.metrics["accuracy"] <= 1.0 and "macro_f1" in rec.metrics
    assert rec.metrics["n"] == rec.split["sizes"]["test"]
    assert rec.split["preprocessing"]["pooling"] == "first token ([CLS])"
