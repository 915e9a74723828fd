"""Domains across targets: `unlabeled:` and `eval_domain:` naming another registered target, for
every target kind (files in each format written by the test), checked at validate time and run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.errors import ConfigError
from harness.plan import expand
from harness.run.execute import ExecOptions, execute
from harness.suite import load_suite
from harness.targets.base import LeakError, TensorSplit
from harness.targets.domains import WithoutLabels, relabel
from harness.targets.load import load_target
from tests.unit import test_splits, test_vision_targets
from tests.unit.test_splits import EXAMPLES, write_lines
from tests.unit.test_vision_targets import _write_folder, write_cifar10

pytest.importorskip("datasets")

# the sources and the data dir of the target tests
cnn, bert, _data_root = test_splits.cnn, test_splits.bert, test_vision_targets._data_root


def conll(path: Path, word: str) -> str:
    lines = []
    for i in range(30):
        lines += [f"{word}{i}\tO", f"{word}paris\tB-loc", "", f"{word}x{i}\tO", f"{word}rome{i}\tB-loc", ""]
    path.write_text("\n".join(lines))
    return f"conll/{path}"


# ------------------------------------------------------------------- unlabeled: every target kind


@pytest.mark.parametrize("namespace", sorted(EXAMPLES))
def test_every_target_takes_unlabeled_data_from_another_target(namespace, tmp_path, cnn, bert):
    (tmp_path / "pair").mkdir()
    modality, block = EXAMPLES[namespace](tmp_path / "pair")
    other = {"dataset": "test/tiny_images", "split_seed": 5} if modality == "image" else \
        {"dataset": conll(tmp_path / "other.txt", "tw")}
    task = block.get("task") or ("image-classification" if modality == "image" else "token-classification")
    if namespace == "hftext":  # text classification: the other domain is text classification too
        other = {"dataset": "hftext/json", "data_files": write_lines(
            tmp_path / "other.json", [{"text": f"tweet {i} !", "label": i % 2} for i in range(30)])}
    data = load_target({**block, "task": task, "unlabeled": other}, cnn if modality == "image" else bert)
    unlabeled = data.extra["unlabeled"]
    assert isinstance(unlabeled, WithoutLabels) and len(unlabeled) > 0
    batch = next(unlabeled.batches(4))
    assert "index" not in batch and bool((batch["labels"] == -100).all())  # every label ignored, its shape kept
    labelled = next(data.splits["train"].batches(4))
    assert batch["labels"].ndim == labelled["labels"].ndim  # so both are pooled alike (text: the first token)
    assert data.split_info["unlabeled_domain"] == other["dataset"]
    assert data.split_info["unlabeled_split"]["split"] == "train"


# -------------------------------------------------------------- eval_domain: a kind at a time


def test_imagefolder_scored_on_another_tree_adapting_to_a_third(tmp_path, cnn):
    _write_folder(tmp_path / "a", classes=("cat", "dog"), per_class=10)
    _write_folder(tmp_path / "b", classes=("cat", "dog"), per_class=10, seed=1)
    _write_folder(tmp_path / "c", classes=("cat", "dog"), per_class=10, seed=2)
    other = load_target({"dataset": f"imagefolder/{tmp_path / 'b'}"}, cnn)
    third = load_target({"dataset": f"imagefolder/{tmp_path / 'c'}"}, cnn)
    data = load_target({"dataset": f"imagefolder/{tmp_path / 'a'}", "eval_domain": {"dataset": f"imagefolder/{tmp_path / 'b'}"},
                        "unlabeled": {"dataset": f"imagefolder/{tmp_path / 'c'}", "split": "test"}}, cnn)
    assert data.split_info["fingerprint"]["test"] == other.split_info["fingerprint"]["test"]
    assert data.split_info["fingerprint"]["val"] == other.split_info["fingerprint"]["val"]
    assert data.split_info["eval_domain"] == f"imagefolder/{tmp_path / 'b'}"
    assert data.split_info["unlabeled_split"]["split"] == "test" and len(data.extra["unlabeled"]) == len(third.splits["test"])


def test_relabel_moves_another_domains_classes_into_the_pairs_order():
    split = TensorSplit({"x": torch.zeros(4, 2), "labels": torch.tensor([0, 1, 2, -100])})
    moved = relabel(split, [2, 0, 1])
    assert moved.tensors["labels"].tolist() == [2, 0, 1, -100]


def test_cifar_scored_on_another_cifar_copy(tmp_path, cnn):
    write_cifar10(tmp_path / "a", seed=0)
    write_cifar10(tmp_path / "b", seed=1)
    b = {"dataset": "torchvision/cifar10", "data_dir": str(tmp_path / "b"), "download": False}
    data = load_target({"dataset": "torchvision/cifar10", "data_dir": str(tmp_path / "a"), "download": False,
                        "eval_domain": b, "unlabeled": b}, cnn)
    other = load_target(b, cnn)
    assert data.split_info["fingerprint"]["test"] == other.split_info["fingerprint"]["test"]
    assert data.split_info["fingerprint"]["train"] != other.split_info["fingerprint"]["train"]


def test_conll_scored_on_another_file_and_a_label_space_mismatch_is_refused(tmp_path, bert):
    a, b = conll(tmp_path / "a.txt", "n"), conll(tmp_path / "b.txt", "tw")
    data = load_target({"dataset": a, "task": "token-classification", "eval_domain": {"dataset": b}}, bert)
    assert data.split_info["eval_domain"] == b
    other = load_target({"dataset": b, "task": "token-classification"}, bert)
    assert data.split_info["fingerprint"]["test"] == other.split_info["fingerprint"]["test"]
    (tmp_path / "c.txt").write_text("\n".join(["x\tO", "y\tB-per", ""] * 30))
    with pytest.raises(Exception, match="has other labels than the pair's target"):
        load_target({"dataset": a, "task": "token-classification", "eval_domain": {"dataset": f"conll/{tmp_path / 'c.txt'}"}}, bert)


def test_hugging_face_ner_scored_on_another_json_set(tmp_path, bert):
    def rows(word):
        return [{"tokens": [word, str(i)], "ner_tags": ["O", "B-num"]} for i in range(30)]

    a = {"dataset": "hfner/json", "task": "token-classification", "token_column": "tokens", "tag_column": "ner_tags",
         "data_files": write_lines(tmp_path / "a.json", rows("a"))}
    b = {**a, "data_files": write_lines(tmp_path / "b.json", rows("b"))}
    data = load_target({**a, "eval_domain": {k: v for k, v in b.items() if k != "task"}}, bert)
    ours, other = load_target(a, bert), load_target(b, bert)
    assert data.split_info["fingerprint"]["train"] == ours.split_info["fingerprint"]["train"]
    assert data.split_info["fingerprint"]["test"] == other.split_info["fingerprint"]["test"]


def test_a_domain_that_shares_examples_with_the_training_split_is_a_leak(tmp_path, cnn):
    # the same images split another way: some of the other copy's test images are training images here
    digits = {"dataset": "sklearn/digits", "image_size": 8}
    with pytest.raises(LeakError, match="are also in 'train'"):
        load_target({**digits, "eval_domain": {**digits, "split_seed": 1}}, cnn)
    # the same split of the same images: nothing crosses
    load_target({**digits, "eval_domain": dict(digits)}, cnn)
    # unlabeled data that holds the very inputs the pair is scored on
    other = {"dataset": "test/tiny_images", "split_seed": 4}
    with pytest.raises(LeakError, match="are in the test split the pair is tuned or scored on"):
        load_target({"dataset": "test/tiny_images", "eval_domain": other, "unlabeled": {**other, "split": "test"}}, cnn)


@pytest.mark.parametrize("split", ["val", "test"])
def test_unlabeled_data_holding_either_held_out_split_is_a_leak(cnn, split):
    # the unlabeled domain is the eval domain's own val (test) split: only that split is shared, so a
    # check that looked at the test split alone would let adaptation to the validation inputs pass
    other = {"dataset": "test/tiny_images", "split_seed": 4}
    with pytest.raises(LeakError, match=f"are in the {split} split the pair is tuned or scored on"):
        load_target({"dataset": "test/tiny_images", "eval_domain": other, "unlabeled": {**other, "split": split}}, cnn)
    # its train split (the default) holds neither
    load_target({"dataset": "test/tiny_images", "eval_domain": other, "unlabeled": dict(other)}, cnn)


# ------------------------------------------------------------------------------ validate, run

SUITE = """\
suite: cross
seeds: [0]
defaults: {{epochs: 1, batch_size: 16, lr: 1e-2}}
pairs:
  - id: p
    source: {{model: test/tiny_cnn}}
    target: {target}
strategies: [{strategies}]
"""


def errors(write_suite, target: str, strategies: str = "dann") -> str:
    with pytest.raises(ConfigError) as e:
        load_suite(write_suite(SUITE.format(target=target, strategies=strategies)))
    return str(e.value)


def test_validate_checks_the_other_target_as_a_target_of_the_pairs_task(write_suite, tmp_path):
    msg = errors(write_suite, "{dataset: test/tiny_images, task: image-classification, unlabeled: {dataset: test/tiny_imagez}}")
    assert "pairs[0].target.unlabeled.dataset" in msg and "tiny_images" in msg
    msg = errors(write_suite, "{dataset: test/tiny_images, task: image-classification, eval_domain: {dataset: test/tiny_images, split: val}}")
    assert "pairs[0].target.eval_domain.split" in msg and "`unlabeled:` only" in msg
    msg = errors(write_suite, "{dataset: test/tiny_images, task: image-classification, unlabeled: {dataset: test/tiny_images, split: dev}}")
    assert "one of train, val, test" in msg
    msg = errors(write_suite, "{dataset: test/tiny_images, task: image-classification, unlabeled: {dataset: test/tiny_ner, task: token-classification}}")
    assert "image-classification" in msg
    msg = errors(write_suite, f"{{dataset: 'imagefolder/{tmp_path}', unlabeled: shifted}}")
    assert "has no domains of its own" in msg and "unlabeled: {dataset:" in msg
    msg = errors(write_suite, f"{{dataset: 'imagefolder/{tmp_path}'}}")
    assert "dann needs unlabeled target-domain data" in msg and "another target" in msg


def test_a_pair_adapting_to_another_target_runs_and_records_its_domains(write_suite, tmp_path):
    target = ("{dataset: test/tiny_images, task: image-classification, n: 60, unlabeled: {dataset: test/tiny_images, n: 60, split_seed: 3}, "
              "eval_domain: {dataset: test/tiny_images, n: 60, split_seed: 3}}")
    runs = expand(load_suite(write_suite(SUITE.format(target=target, strategies="dann, linear_probe"))))
    assert runs[0].target["unlabeled"] == {"dataset": "test/tiny_images", "n": 60, "split_seed": 3}
    records = {r.label: execute(r, ExecOptions(cache_dir=tmp_path)) for r in runs}
    dann, probe = records["dann"], records["linear_probe"]
    assert dann.status == "ok", dann.error
    assert dann.data["unlabeled_domain"] == "test/tiny_images" and dann.data["evaluated_on"] == "test/tiny_images"
    assert dann.data["trained_on"] == "test/tiny_images" and probe.data["domain_gap"]["rows_per_domain"] >= 20
    # another domain is another run
    plain = expand(load_suite(write_suite(SUITE.format(target="{dataset: test/tiny_images, task: image-classification, n: 60}", strategies="linear_probe"))))
    assert plain[0].run_id != runs[1].run_id
