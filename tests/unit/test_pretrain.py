"""``pretrain:`` sources: a source the suite trains on another task first, as one aux node of the
plan graph that every run transferring it reads; checked when the suite loads (split leaks
included), shared across pairs, its weights loaded by the probe and by ``harness rank``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.errors import ConfigError
from harness.plan import PRETRAIN_INPUT, expand
from harness.registry import TARGETS
from harness.run.context import InputRun
from harness.run.execute import check_pretrain_leak
from harness.suite import load_suite
from harness.targets.base import TargetData

PRE = """\
suite: pre
seeds: [0, 1]
defaults: {epochs: 1, batch_size: 16, max_train_samples: 48, max_eval_samples: 32, device: cpu}
pairs:
  - id: a
    source: &src
      model: test/tiny_cnn
      pretrain:
        id: cnn-on-four
        target: {dataset: test/tiny_images, num_classes: 4}
        strategy: scratch
        train: {epochs: 2, lr: 1e-2}
    target: &t {dataset: test/tiny_images, task: image-classification}
  - id: b
    source: *src
    target: {dataset: test/tiny_images, task: image-classification, n: 120}
strategies: [linear_probe, full_finetune, scratch]
"""


def errors_of(path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    return "\n".join(str(i) for i in exc.value.issues)


def test_the_pretrain_is_one_aux_node_shared_by_every_pair_and_seed_that_reads_it(write_suite):
    runs = expand(load_suite(write_suite(PRE)))
    (node,) = [r for r in runs if r.role == "aux"]
    assert node.pair == "cnn-on-four" and node.strategy == "scratch" and node.seed == 0
    assert node.exports == ("weights",) and "pretrain" not in node.source
    assert node.target == {"dataset": "test/tiny_images", "task": "image-classification", "num_classes": 4}
    # the suite's defaults under the block's own train keys (not the pairs' budgets)
    assert node.train["epochs"] == 2 and node.train["lr"] == 0.01 and node.train["batch_size"] == 16
    readers = [r for r in runs if r.inputs]
    assert {(r.pair, r.strategy) for r in readers} == {(p, s) for p in "ab" for s in ("linear_probe", "full_finetune")}
    assert all(r.inputs == {PRETRAIN_INPUT: node.run_id} and node.run_id in r.depends_on for r in readers)
    # scratch starts from random weights: it reads no pretrain
    assert all(not r.inputs for r in runs if r.strategy == "scratch")
    assert runs.index(node) < min(runs.index(r) for r in readers)  # dependencies first


def test_a_run_id_follows_its_pretrain(write_suite):
    before = {r.run_id for r in expand(load_suite(write_suite(PRE)))}
    after = {r.run_id for r in expand(load_suite(write_suite(PRE.replace("epochs: 2, lr: 1e-2", "epochs: 3, lr: 1e-2"))))}
    changed = before ^ after
    assert any(i.startswith("cnn-on-four.") for i in changed)
    assert any(i.startswith("a.linear_probe.") for i in changed)
    assert not any(".scratch.s" in i and not i.startswith("cnn-on-four") for i in changed)  # scratch reads none


@pytest.mark.parametrize("block, expected", [
    ("{target: {dataset: test/tiny_images}, stratgy: scratch}", "pairs[0].source.pretrain.stratgy: unknown key 'stratgy'. Did you mean: strategy?"),
    ("{strategy: scratch}", "pairs[0].source.pretrain: missing required key 'target'"),
    ("{target: {dataset: test/tiny_images}, strategy: lora}", "pretrained by scratch or full_finetune"),
    ("{target: {dataset: test/tiny_ner, task: token-classification}}", "needs a text model, but the source is an image model"),
    ("{target: {dataset: test/tiny_images}, train: {search: {lr: [0.1, 0.01]}}}", "a pretrain is trained once"),
    ("{target: {dataset: test/tiny_images}, train: {epoch: 2}}", "pairs[0].source.pretrain.train"),
    ("{target: {dataset: test/tiny_images}, seed: -1}", "pairs[0].source.pretrain.seed: must be a non-negative"),
    ("{target: {dataset: test/tiny_images, split_seed: 3}}", "a split leak"),
    ("{target: {dataset: test/tiny_imagez}}", "pairs[0].source.pretrain.target.dataset"),
])
def test_a_bad_pretrain_block_is_named_with_its_line_and_key(write_suite, block, expected):
    text = f"""\
        suite: s
        seeds: [0]
        pairs:
          - id: p
            source: {{model: test/tiny_cnn, pretrain: {block}}}
            target: {{dataset: test/tiny_images, task: image-classification}}
        strategies: [linear_probe]
        """
    errs = errors_of(write_suite(text))
    assert expected in errs and "suite.yaml:5:" in errs, errs


def test_the_runs_start_from_the_weights_the_pretrain_exported(write_suite, tmp_path):
    suite = write_suite(PRE.replace("[linear_probe, full_finetune, scratch]", "[linear_probe]").replace("seeds: [0, 1]", "seeds: [0]"))
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert main(["run", str(suite), "--results", str(results), "--cache-dir", str(cache), "--no-progress"]) == 0
    records = {r["pair"]: r for r in (json.loads(p.read_text()) for p in (results / "pre").glob("*.json"))}
    pre = records["cnn-on-four"]
    assert pre["role"] == "aux" and pre["status"] == "ok" and pre["split"]["used"]["train"] == 48
    for pair in ("a", "b"):
        info = records[pair]["config"]["notes"]["source_info"]
        assert info["pretrain_run"] == pre["run_id"] and info["pretrain_labels"] == ["c0", "c1", "c2", "c3"]
        assert records[pair]["config"]["inputs"] == {"pretrain": pre["run_id"]}
    # the backbone the probe used is the exported one: its features differ from the random init's
    from harness.plan import expand as plan
    from harness.run.execute import ExecOptions, read_inputs, source_backbone
    from harness.run.seed import seed_everything

    runs = plan(load_suite(suite))
    spec = next(r for r in runs if r.pair == "a")
    node = next(r for r in runs if r.role == "aux")
    got = read_inputs(spec, {"pretrain": node}, ExecOptions(cache_dir=cache))
    seed_everything(0)
    loaded = source_backbone(spec, True, got)
    weights = got["pretrain"].outputs["weights"]
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, weights["state"][k])
    seed_everything(0)
    fresh = source_backbone(spec, False, None)  # a strategy from random weights ignores the pretrain
    assert not all(torch.equal(v, fresh.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert loaded.source_head is not None and loaded.source_head[0].shape == (4, loaded.feature_dim)
    # a second run reuses everything: the pretrain is trained once per key
    assert main(["run", str(suite), "--results", str(results), "--cache-dir", str(cache), "--no-progress"]) == 0
    assert len(list((results / "pre").glob("*.json"))) == 3


def test_rank_pretrains_first_and_scores_leep_and_nce_from_the_pretrain_head(write_suite, tmp_path, capsys):
    from harness.report.transferability import read

    suite = write_suite(PRE.replace("[linear_probe, full_finetune, scratch]", "[linear_probe]").replace("seeds: [0, 1]", "seeds: [0]"))
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert main(["rank", str(suite), "--results", str(results), "--cache-dir", str(cache), "--no-progress"]) == 0
    assert "pretraining 1 source(s) first" in capsys.readouterr().err
    scores = read(results / "pre")
    assert [s.pair for s in scores] == ["a", "b"]  # the pretrain node is not a source to rank
    for s in scores:
        assert {"leep", "nce", "logme"} <= set(s.scores) and all(np.isfinite(v) for v in s.scores.values())
    # harness run then finds the pretrain on record and the probe's features in the cache
    assert main(["run", str(suite), "--results", str(results), "--cache-dir", str(cache), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 already done (skipped)" in out
    probes = [json.loads(p.read_text()) for p in (results / "pre").glob("[ab].*.json")]
    assert [r["config"]["notes"]["feature_cache_hit"] for r in probes] == [True, True]


def test_a_pretrain_that_trained_on_a_held_out_example_fails_the_run():
    keys = {"train": np.array(["k1", "k2"], dtype=object), "val": np.array(["k3"], dtype=object),
            "test": np.array(["k2", "k4"], dtype=object)}
    data = TargetData(label_names=["a", "b"], splits={}, keys=keys, split_info={}, preprocessing={})

    class Spec:
        run_id = "p.linear_probe.s0-x"

    leak = {"pretrain": InputRun("pre.scratch.s0-y", {"weights": {"train_keys": ["k2", "k9"]}})}
    with pytest.raises(ValueError, match="split leak: .*pre.scratch.s0-y trained on 1 example"):
        check_pretrain_leak(Spec, data, leak)
    check_pretrain_leak(Spec, data, {"pretrain": InputRun("x", {"weights": {"train_keys": ["k1", "k9"]}})})
    check_pretrain_leak(Spec, data, None)


@pytest.mark.parametrize(("held", "split"), [("k3", "val"), ("k4", "test")])
def test_a_pretrain_leak_into_either_held_out_split_alone_is_refused(held, split):
    # one leaked example in one split only: a check that skipped the validation split (where
    # the run tunes and selects) would pass the val case
    keys = {"train": np.array(["k1", "k2"], dtype=object), "val": np.array(["k3"], dtype=object),
            "test": np.array(["k4"], dtype=object)}
    data = TargetData(label_names=["a", "b"], splits={}, keys=keys, split_info={}, preprocessing={})

    class Spec:
        run_id = "p.linear_probe.s0-x"

    leak = {"pretrain": InputRun("pre.scratch.s0-y", {"weights": {"train_keys": ["k1", held]}})}
    with pytest.raises(ValueError, match=f"trained on 1 example.* of this run's {split} split"):
        check_pretrain_leak(Spec, data, leak)


def _digits(**params) -> TargetData:
    from harness.sources.nets import build_backbone

    backbone = build_backbone({"model": "test/tiny_cnn", "image_size": 16})
    return TARGETS.get("sklearn").load("digits", params, "image-classification", backbone)


def test_a_class_subset_keeps_each_image_in_the_split_it_has_in_the_whole_set():
    whole, sub = _digits(), _digits(classes=[3, 1])
    assert sub.label_names == ["3", "1"]
    for split in ("train", "val", "test"):
        kept = set(sub.keys[split])
        assert kept <= set(whole.keys[split])  # never moved to another split
        labels = whole.splits[split].tensors["labels"]
        assert len(kept) == int(((labels == 3) | (labels == 1)).sum())  # and every one of them kept
        assert set(sub.splits[split].tensors["labels"].tolist()) == {0, 1}  # 3 → 0, 1 → 1
    with pytest.raises(ValueError, match="distinct digits"):
        _digits(classes=[1, 1])


def test_shots_keep_that_many_training_images_per_class_and_the_held_out_splits_whole():
    whole, few = _digits(), _digits(shots=10)
    assert torch.bincount(few.splits["train"].tensors["labels"]).tolist() == [10] * 10
    assert set(few.keys["train"]) <= set(whole.keys["train"])
    for split in ("val", "test"):
        assert list(few.keys[split]) == list(whole.keys[split])
    assert list(_digits(shots=10).keys["train"]) == list(few.keys["train"])  # the same for every run
    assert few.split_info["shots"] == 10


def test_a_text_source_pretrained_on_token_classification_transfers_its_encoder(write_suite, tmp_path):
    text = """\
        suite: pre-text
        seeds: [0]
        defaults: {epochs: 1, batch_size: 8, max_train_samples: 24, max_eval_samples: 16, device: cpu}
        pairs:
          - id: bert
            source:
              model: test/tiny_bert
              pretrain: {target: {dataset: test/tiny_ner}, strategy: full_finetune, train: {lr: 1e-3}}
            target: {dataset: test/tiny_ner, task: token-classification}
        strategies: [linear_probe]
        """
    suite = write_suite(text)
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "--no-progress"]) == 0
    records = {r["role"]: r for r in (json.loads(p.read_text()) for p in (results / "pre-text").glob("*.json"))}
    assert records["aux"]["pair"].startswith("pretrain-") and records["aux"]["task"] == "token-classification"
    assert records["final"]["config"]["notes"]["source_info"]["pretrain_run"] == records["aux"]["run_id"]


def test_sources_at_several_resolutions_rank_on_one_target():
    from harness.report.transferability import target_name

    a = {"dataset": "sklearn/digits", "task": "image-classification", "image_size": 48, "shots": 10}
    assert target_name(a) == target_name({**a, "image_size": 16}) == "sklearn/digits (shots=10)"
    assert target_name(a) != target_name({**a, "shots": 20})


ONE = PRE.replace("[linear_probe, full_finetune, scratch]", "[linear_probe]").replace("seeds: [0, 1]", "seeds: [0]")


def _probe_hits(results, suite: str) -> dict[str, bool]:
    recs = [json.loads(p.read_text()) for p in (results / suite).glob("a.linear_probe.*.json")]
    return {r["run_id"]: r["config"]["notes"]["feature_cache_hit"] for r in recs}


def test_the_feature_cache_follows_the_pretrain_run_not_only_its_block(write_suite, tmp_path):
    """The block is not all a pretrain reads: the suite's defaults and smoke mode change its weights
    too. A probe must never read features of another pretrain's weights."""
    results, cache = tmp_path / "results", tmp_path / "cache"
    base = write_suite(ONE)
    assert main(["run", str(base), "--smoke", "--results", str(results), "--cache-dir", str(cache), "--no-progress"]) == 0
    assert main(["run", str(base), "--results", str(results), "--cache-dir", str(cache), "--no-progress"]) == 0
    assert list(_probe_hits(results, "pre").values()) == [False]  # not the smoke pretrain's features
    other = write_suite(ONE.replace("lr: 1e-2}\n    target: &t", "lr: 3e-2}\n    target: &t")
                        .replace("defaults: {epochs: 1,", "defaults: {weight_decay: 0.1, epochs: 1,"), "other.yaml")
    assert main(["run", str(other), "--results", str(results), "--cache-dir", str(cache), "--no-progress"]) == 0
    hits = _probe_hits(results, "pre")
    assert len(hits) == 2 and not any(hits.values())  # another pretrain (defaults changed): computed afresh
    assert main(["run", str(other), "--results", str(tmp_path / "again"), "--cache-dir", str(cache), "--no-progress"]) == 0
    assert list(_probe_hits(tmp_path / "again", "pre").values()) == [True]  # the same pretrain: reused


def test_rank_without_a_probe_scores_a_run_that_starts_from_the_pretrained_weights(write_suite, tmp_path, capsys):
    from harness.report.transferability import read

    suite = write_suite(ONE.replace("strategies: [linear_probe]", "strategies: [scratch, full_finetune]"))
    results = tmp_path / "results"
    assert main(["rank", str(suite), "--results", str(results), "--no-progress"]) == 0
    scores = read(results / "pre")
    assert [s.pair for s in scores] == ["a", "b"] and all("leep" in s.scores for s in scores)  # the pretrained head
    assert all("pretrain" in s.source for s in scores)


def test_rank_does_not_train_a_failed_pretrain_again_and_says_so(write_suite, tmp_path, capsys):
    from harness.report.transferability import read

    suite = write_suite(ONE.replace("train: {epochs: 2, lr: 1e-2}", "train: {epochs: 2, lr: 1e-2, timeout_s: 0.001}"))
    results = tmp_path / "results"
    assert main(["rank", str(suite), "--results", str(results), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert sum(line.startswith("pretrain run cnn-on-four.scratch.s0-") for line in err.splitlines()) == 1
    assert err.count("its source's pretrain run cnn-on-four.scratch.s0-") == 2 and "timeout" in err
    assert all("failed" in s.skipped["all"] and not s.scores for s in read(results / "pre"))
    assert len(list((results / "pre").glob("cnn-on-four.*.json"))) == 1


def test_pretrain_ids_name_one_block_and_no_pair(write_suite):
    same_as_pair = ONE.replace("id: cnn-on-four", "id: a")
    assert "pretrain id 'a' is also a pair id" in errors_of(write_suite(same_as_pair))
    two_blocks = ONE.replace("    source: *src\n", "    source: {<<: *src, image_size: 24}\n")
    assert "pretrain id 'cnn-on-four' names another block (pair 'a')" in errors_of(write_suite(two_blocks))


def test_a_source_spec_teacher_cannot_be_pretrained_by_the_suite(write_suite):
    text = """\
        suite: s
        seeds: [0]
        pairs:
          - id: p
            source: {model: test/tiny_cnn}
            target: {dataset: test/tiny_images, task: image-classification}
        strategies:
          - distill: {teacher: {model: test/tiny_cnn, pretrain: {target: {dataset: test/tiny_images}}}}
        """
    assert "a source-spec teacher takes no `pretrain:` block" in errors_of(write_suite(text))
