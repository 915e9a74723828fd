"""``hfner/…`` on small files in the real Hub schemas (CoNLL-2003, WNUT-17) written by the test:
no network. ClassLabel ids map to names from the features; splits come from the dataset."""

from __future__ import annotations

import json

import pytest

datasets = pytest.importorskip("datasets")

from harness.registry import SOURCES, TARGETS  # noqa: E402
from harness.targets.load import load_target  # noqa: E402
from harness.targets.text import HFDataError  # noqa: E402
from harness.targets.tokens import ConllError  # noqa: E402

CONLL_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
WNUT_NAMES = ["O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group", "I-group",
              "B-location", "I-location", "B-person", "I-person", "B-product", "I-product"]


@pytest.fixture(scope="module")
def tiny():
    return SOURCES.get("test").build("tiny_bert", {"max_length": 32}, pretrained=True)


def conll_features():
    from datasets import ClassLabel, Features, List, Value

    return Features({"id": Value("string"), "tokens": List(Value("string")),
                     "pos_tags": List(Value("int32")), "ner_tags": List(ClassLabel(names=CONLL_NAMES))})


def conll_rows(offset: int):
    # as on the Hub: a -DOCSTART- row, then sentences with ClassLabel ids
    tokens = [["-DOCSTART-"], ["eu", "rejects", "german", "call"], ["peter", "blackburn"], ["in", "paris", "now"]]
    tags = [[0], [3, 0, 7, 0], [1, 2], [0, 5, 0]]
    return {"id": [str(offset + i) for i in range(4)], "tokens": tokens, "pos_tags": [[0] * len(t) for t in tokens],
            "ner_tags": tags}


def write_conll2003_parquet(tmp_path):
    from datasets import Dataset

    files = {}
    for i, split in enumerate(["train", "validation", "test"]):
        files[split] = str(tmp_path / f"{split}.parquet")
        Dataset.from_dict(conll_rows(10 * i), features=conll_features()).to_parquet(files[split])
    return files


def test_conll2003_schema_parquet(tmp_path, tiny):
    files = write_conll2003_parquet(tmp_path)
    data = TARGETS.get("hfner").load("parquet", {"data_files": files}, "token-classification", tiny)
    assert data.label_names == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 3, "val": 3, "test": 3}
    assert data.split_info["origin"] == {"train": "train", "val": "validation", "test": "test"}
    assert data.preprocessing["docstart_rows_dropped"] == 3
    assert len(data.split_info["builder_hash"]) >= 16  # what the datasets cache is keyed by (Hub: the commit)
    train = data.splits["train"]
    assert train.sequences[0] == ["B-ORG", "O", "B-MISC", "O"]
    assert train.sequences[1] == ["B-PER", "I-PER"]
    first = [data.label_names[x] for x in train.labels[1] if x != -100]
    assert first == ["B-PER", "I-PER"]  # one label per word, on its first sub-word


def test_conll2003_short_name_resolves_to_the_parquet_export(monkeypatch, tmp_path, tiny):
    files = write_conll2003_parquet(tmp_path)
    real = datasets.load_dataset
    seen = {}

    def fake(path, **kw):
        seen.update(path=path, **kw)
        return real("parquet", data_files=files)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    data = TARGETS.get("hfner").load("conll2003", {}, "token-classification", tiny)
    assert seen == {"path": "eriktks/conll2003", "revision": "refs/convert/parquet"}
    assert data.split_info["revision"] == "refs/convert/parquet" and data.split_info["source"] == "hfner/conll2003"
    TARGETS.get("hfner").load("conll2003", {"revision": "abc123"}, "token-classification", tiny)
    assert seen["revision"] == "abc123"  # a pinned revision wins


def test_wnut17_schema_saved_to_disk(tmp_path, tiny):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    feats = Features({"id": Value("string"), "tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=WNUT_NAMES))})
    rows = {"id": ["0", "1"], "tokens": [["@paul", "empire", "state", "building"], ["so", "kktny", "in", "30"]],
            "ner_tags": [[0, 7, 8, 8], [0, 3, 0, 0]]}
    DatasetDict({s: Dataset.from_dict(rows, features=feats) for s in ("train", "validation", "test")}).save_to_disk(tmp_path / "wnut")
    data = TARGETS.get("hfner").load(str(tmp_path / "wnut"), {}, "token-classification", tiny)
    assert data.splits["test"].sequences[0] == ["O", "B-location", "I-location", "I-location"]
    assert data.splits["test"].sequences[1] == ["O", "B-creative-work", "O", "O"]


def write_json(tmp_path, rows, name="data.json"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def test_string_tags_custom_columns_and_carved_splits(tmp_path, tiny):
    rows = [{"words": ["a", "b", str(i)], "labels": ["O", "O", "B-num"]} for i in range(40)]
    f = write_json(tmp_path, rows)
    params = {"data_files": f, "token_column": "words", "tag_column": "labels", "val_fraction": 0.25, "test_fraction": 0.25}
    data = TARGETS.get("hfner").load("json", params, "token-classification", tiny)
    assert data.label_names == ["O", "B-num"]
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 20, "val": 10, "test": 10}
    assert "carved from 'train'" in data.split_info["origin"]["test"]
    # the same split_seed carves the same rows; another seed other rows
    def fingerprints(p):
        return load_target({"dataset": "hfner/json", **p}, tiny, "token-classification").split_info["fingerprint"]

    first, again, other = fingerprints(params), fingerprints(params), fingerprints({**params, "split_seed": 1})
    assert first == again and first["test"] != other["test"] and first["train"] != other["train"]


@pytest.mark.parametrize("row, message", [
    ({"tokens": ["a", "b"], "ner_tags": ["O"]}, "row 1: 2 words but 1 tags"),
    ({"tokens": ["a"], "ner_tags": ["X-foo"]}, "row 1: tag 'X-foo' is not IOB2"),
    ({"tokens": [], "ner_tags": []}, "row 1: empty sentence"),
])
def test_bad_rows_name_split_and_row(tmp_path, tiny, row, message):
    f = write_json(tmp_path, [{"tokens": ["a"], "ner_tags": ["O"]}, row])
    with pytest.raises(ConllError, match=message) as e:
        TARGETS.get("hfner").load("json", {"data_files": {"train": f, "validation": f, "test": f}},
                                  "token-classification", tiny)
    assert str(e.value).startswith("hfner/json: split 'train' row 1")


def test_ids_without_names_and_missing_things(tmp_path, tiny):
    from datasets import Dataset

    bad = conll_rows(0)
    p = str(tmp_path / "bad.parquet")
    Dataset.from_dict(bad).to_parquet(p)  # plain ints: no ClassLabel names to read them with
    with pytest.raises(ConllError, match="row 1: tag 3 is an id, but column 'ner_tags' has no ClassLabel"):
        TARGETS.get("hfner").load("parquet", {"data_files": {"train": p, "test": p}}, "token-classification", tiny)
    files = write_conll2003_parquet(tmp_path)
    with pytest.raises(HFDataError, match="no column 'words' \\(token_column\\); columns: id, tokens, pos_tags, ner_tags"):
        TARGETS.get("hfner").load("parquet", {"data_files": files, "token_column": "words"}, "token-classification", tiny)
    with pytest.raises(HFDataError, match="no split 'dev' \\(val_split\\); it has: train, validation, test"):
        TARGETS.get("hfner").load("parquet", {"data_files": files, "val_split": "dev"}, "token-classification", tiny)
    with pytest.raises(HFDataError, match="cannot load hfner/parquet"):
        TARGETS.get("hfner").load("parquet", {"data_files": str(tmp_path / "none.parquet")}, "token-classification", tiny)


def test_carved_splits_keep_repeated_sentences_together(tmp_path, tiny):
    """A sentence the file holds several times is one example: all its copies land in one split,
    so none is trained on and also held out (WNUT-16's file repeats 99 tweets)."""
    rows = [{"words": ["a", "b", str(i % 10)], "labels": ["O", "O", "B-num"]} for i in range(40)]
    f = write_json(tmp_path, rows)
    params = {"data_files": f, "token_column": "words", "tag_column": "labels", "val_fraction": 0.25, "test_fraction": 0.25}
    data = load_target({"dataset": "hfner/json", **params}, tiny, "token-classification")
    words = {k: {tuple(x) for x in s.sequences} for k, s in data.splits.items()}
    assert sum(len(s) for s in data.splits.values()) == 40
    seen = {k: {str(data.keys[k][i]) for i in range(len(data.splits[k]))} for k in data.splits}
    assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"] and not seen["val"] & seen["test"]
    assert data.split_info["duplicates_across_splits"] == {}
    assert all(words.values())
