"""No split may leak: whatever a target returns, train / val / test are disjoint by content, checked
where every target's data is loaded; a dataset's own duplicates across its official splits are
counted, not refused; fingerprints identify the examples; a split never serves two roles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.registry import SOURCES, TARGETS
from harness.targets.base import (
    LeakError,
    Target,
    TargetData,
    TensorSplit,
    fingerprint,
    split_indices,
)
from harness.targets.load import audit, load_target
from tests.unit.test_vision_targets import _write_folder, write_cifar10

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def cnn():
    return SOURCES.get("test").build("tiny_cnn", {}, pretrained=True)


@pytest.fixture(scope="module")
def bert():
    return SOURCES.get("test").build("tiny_bert", {"max_length": 32}, pretrained=True)


def write_lines(path: Path, rows: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def hf_images(tmp: Path) -> dict:
    from PIL import Image

    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["no", "yes"])})
    files = {}
    for split, n in (("train", 12), ("test", 4)):
        rows = {"img": [Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)) for _ in range(n)],
                "label": [i % 2 for i in range(n)]}
        files[split] = str(tmp / f"{split}.parquet")
        datasets.Dataset.from_dict(rows, features=features).to_parquet(files[split])
    return {"dataset": "hfimages/parquet", "data_files": files, "data_dir": str(tmp / "cache")}


def conll_file(tmp: Path) -> dict:
    lines = []
    for i in range(30):
        lines += [f"w{i}\tO", "paris\tB-loc", "x\tO", ""]
    (tmp / "ner.txt").write_text("\n".join(lines))
    return {"dataset": f"conll/{tmp / 'ner.txt'}", "task": "token-classification"}


# One way to load each registered target namespace offline; a namespace without one fails the
# conformance test below, so a new target cannot skip the leak check.
EXAMPLES = {
    "sklearn": lambda tmp: ("image", {"dataset": "sklearn/digits", "image_size": 8}),
    "test": lambda tmp: ("image", {"dataset": "test/tiny_images"}),
    "packaged": lambda tmp: ("text", {"dataset": "packaged/wnut16", "task": "token-classification"}),
    "torchvision": lambda tmp: (write_cifar10(tmp / "cifar") and "image",
                                {"dataset": "torchvision/cifar10", "data_dir": str(tmp / "cifar"), "download": False}),
    "imagefolder": lambda tmp: (_write_folder(tmp / "tree") or "image", {"dataset": f"imagefolder/{tmp / 'tree'}"}),
    "hfimages": lambda tmp: ("image", hf_images(tmp)),
    "hfner": lambda tmp: ("text", {"dataset": "hfner/json", "task": "token-classification", "data_files": write_lines(
        tmp / "ner.json", [{"tokens": ["a", str(i)], "ner_tags": ["O", "B-num"]} for i in range(30)]),
        "token_column": "tokens", "tag_column": "ner_tags"}),
    "hftext": lambda tmp: ("text", {"dataset": "hftext/json", "data_files": write_lines(
        tmp / "text.json", [{"text": f"review {i}", "label": i % 2} for i in range(30)])}),
    "conll": lambda tmp: ("text", conll_file(tmp)),
}


def test_every_registered_target_has_a_conformance_example():
    assert sorted(e.name for e in TARGETS.entries()) == sorted(EXAMPLES)


@pytest.mark.parametrize("namespace", sorted(EXAMPLES))
def test_every_target_returns_disjoint_splits_with_content_fingerprints(namespace, tmp_path, cnn, bert):
    modality, block = EXAMPLES[namespace](tmp_path)
    data = load_target(block, cnn if modality == "image" else bert)
    keys = {k: set(data.keys[k]) for k in ("train", "val", "test")}
    assert all(len(data.keys[k]) == len(data.splits[k]) for k in keys)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = keys[a] & keys[b]
        assert not shared or data.origins[a] != data.origins[b], (a, b)
        assert len(shared) == data.split_info["duplicates_across_splits"].get(f"{a}~{b}", 0)
    fp = data.split_info["fingerprint"]
    assert len(set(fp.values())) == 3 and fp == {k: fingerprint(data.keys[k]) for k in keys}


class Leaky(Target):
    """A target with a bug: its val split is its test split."""

    tasks = frozenset({"image-classification"})
    default_task = "image-classification"

    def load(self, name, params, task, backbone):
        def split(lo, hi):
            x = torch.arange(lo, hi, dtype=torch.float32).repeat_interleave(4).view(-1, 4)
            return TensorSplit({"pixel_values": x, "labels": torch.zeros(hi - lo, dtype=torch.long)})

        test = split(10, 15)
        return TargetData(["a"], {"train": split(0, 10), "val": test, "test": test})


def test_a_target_that_hands_out_one_split_twice_is_refused_by_content():
    with pytest.raises(LeakError) as e:
        audit(Leaky().load("x", {}, "image-classification", None), "leaky/x")
    msg = str(e.value)
    assert msg.startswith("leaky/x: 5 example(s) of the 'test' split are also in 'val' (compared by content)")
    assert "split_indices(..., keys=...)" in msg


def test_a_run_on_a_leaking_target_fails_with_a_record_that_says_so(write_suite, tmp_path, monkeypatch):
    from harness.plan import expand
    from harness.registry import TARGETS as REG
    from harness.run.execute import ExecOptions, execute
    from harness.suite import load_suite

    monkeypatch.setitem(REG._entries, "leaky", REG._entries["test"].__class__("leaky", Leaky(), "leaky"))
    path = write_suite("suite: l\nseeds: [0]\npairs:\n  - id: p\n    source: {model: test/tiny_cnn}\n"
                       "    target: {dataset: leaky/x, task: image-classification}\nstrategies: [scratch]\n")
    (spec,) = expand(load_suite(path))
    rec = execute(spec, ExecOptions(cache_dir=tmp_path))
    assert rec.status == "failed" and rec.error["type"] == "LeakError"


def test_duplicates_across_a_datasets_own_splits_are_counted_not_refused(tmp_path, bert):
    """Official train and test files that share sentences (as real corpora do) are used as they
    are; the record says how many examples they share."""
    rows = [{"tokens": ["a", str(i)], "ner_tags": ["O", "B-num"]} for i in range(20)]
    files = {"train": write_lines(tmp_path / "train.json", rows),
             "test": write_lines(tmp_path / "test.json", rows[:3] + [{"tokens": ["b"], "ner_tags": ["O"]}])}
    data = load_target({"dataset": "hfner/json", "data_files": files}, bert, "token-classification")
    assert data.origins == {"train": "train", "val": "train", "test": "test"}
    dup = data.split_info["duplicates_across_splits"]
    assert sum(dup.values()) == 3 and set(dup) <= {"train~test", "val~test"}


def test_test_split_validation_carves_val_from_train(tmp_path, bert):
    """GLUE-style sets (hidden test labels): test_split: validation used to hand the validation split
    out as val *and* test, so C selection and early stopping ran on the reported test set."""
    train = [{"text": f"train {i}", "label": i % 2} for i in range(40)]
    val = [{"text": f"val {i}", "label": i % 2} for i in range(10)]
    files = {"train": write_lines(tmp_path / "train.json", train), "validation": write_lines(tmp_path / "val.json", val)}
    data = load_target({"dataset": "hftext/json", "data_files": files, "test_split": "validation",
                        "val_fraction": 0.25}, bert, "text-classification")
    assert len(data.splits["test"]) == 10 and len(data.splits["val"]) == 10 and len(data.splits["train"]) == 30
    origin = data.split_info["origin"]
    assert origin["test"] == "validation" and origin["val"].startswith("carved from 'train'")
    assert "'validation' is the test split" in origin["val"]
    assert not set(data.keys["val"]) & set(data.keys["test"])


def test_fingerprints_identify_examples_not_positions():
    """Two different splits of equal length used to get the same index sha256."""
    a, b = (split_indices(100, 0.2, 0.2, seed) for seed in (0, 1))
    keys = np.asarray([f"ex{i}" for i in range(100)], dtype=object)
    assert len(a["test"]) == len(b["test"])
    assert fingerprint(keys[a["test"]]) != fingerprint(keys[b["test"]])
    assert fingerprint(keys[a["test"]]) == fingerprint(keys[a["test"]][::-1])  # a set: order does not matter


def test_carving_keeps_identical_examples_together_and_changes_nothing_without_duplicates():
    unique = np.asarray([f"ex{i}" for i in range(50)], dtype=object)
    plain = split_indices(50, 0.2, 0.2, 3)
    keyed = split_indices(50, 0.2, 0.2, 3, keys=unique)
    assert all(np.array_equal(plain[k], keyed[k]) for k in plain)
    repeated = np.asarray([f"ex{i % 10}" for i in range(50)], dtype=object)
    parts = split_indices(50, 0.2, 0.2, 3, keys=repeated)
    groups = {k: set(repeated[v]) for k, v in parts.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["val"]
    assert sum(len(v) for v in parts.values()) == 50


def test_wnut16_repeated_tweets_no_longer_straddle_train_and_test(bert):
    """The packaged WNUT-16 file repeats 99 tweets: carved by index, some were trained on and tested."""
    data = load_target({"dataset": "packaged/wnut16"}, bert, "token-classification")
    assert not set(data.keys["train"]) & set(data.keys["test"])
    assert data.split_info["duplicates_across_splits"] == {}
