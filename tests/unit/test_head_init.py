"""``source.head_init``: a new head is initialised by the model family's convention unless the
suite says otherwise; Hugging Face text models get what ``AutoModelFor*Classification`` gives."""

from __future__ import annotations

import math

import pytest
import torch

from harness.registry import SOURCES
from harness.sources.nets import TransferModel
from harness.suite import load_suite
from tests.conftest import TINY_SUITE
from tests.unit.test_config_load import errors_of

LABELS = 400  # 32 x 400 weights: the sample std is within a few percent of the true one


def hf_dir(tmp_path, initializer_range: float):
    from transformers import BertConfig, BertModel

    from harness.sources.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, initializer_range=initializer_range)
    BertModel(cfg).save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    return tmp_path / "bert", cfg


def test_hf_auto_head_is_the_libraries_own_classifier_init(tmp_path):
    from transformers import BertForTokenClassification

    path, cfg = hf_dir(tmp_path, initializer_range=0.3)
    torch.manual_seed(0)
    head = TransferModel(SOURCES.get("hf").build(str(path), {}, pretrained=True), LABELS).head
    cfg.num_labels = LABELS
    reference = BertForTokenClassification(cfg).classifier
    assert torch.count_nonzero(head.bias) == 0 and torch.count_nonzero(reference.bias) == 0
    assert head.weight.std().item() == pytest.approx(0.3, rel=0.05)
    assert head.weight.std().item() == pytest.approx(reference.weight.std().item(), rel=0.05)
    assert abs(head.weight.mean().item()) < 0.02


@pytest.mark.parametrize(("source", "name"), [("test", "tiny_bert"), ("test", "tiny_cnn")])
def test_pytorch_head_is_nn_linear_default(source, name):
    backbone = SOURCES.get(source).build(name, {}, pretrained=True)
    init = "pytorch" if name == "tiny_bert" else "auto"  # vision's convention is PyTorch's default
    head = TransferModel(backbone, LABELS, head_init=init).head
    bound = 1 / math.sqrt(backbone.feature_dim)  # Kaiming-uniform(a=sqrt 5) and the bias: U(-bound, bound)
    assert head.weight.abs().max().item() <= bound and head.bias.abs().max().item() <= bound
    assert torch.count_nonzero(head.bias) == LABELS
    assert head.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_normal_head_on_a_vision_backbone_uses_std_002():
    backbone = SOURCES.get("test").build("tiny_cnn", {}, pretrained=True)
    head = TransferModel(backbone, LABELS, head_init="normal").head
    assert torch.count_nonzero(head.bias) == 0
    assert head.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_head_init_follows_the_run_seed():
    backbone = SOURCES.get("test").build("tiny_bert", {}, pretrained=True)
    torch.manual_seed(5)
    a = TransferModel(backbone, 9).head.weight.clone()
    torch.manual_seed(5)
    assert torch.equal(TransferModel(backbone, 9).head.weight, a)
    assert not torch.equal(TransferModel(backbone, 9).head.weight, a)


def test_head_init_is_a_validated_source_key(write_suite):
    good = load_suite(write_suite(TINY_SUITE.replace("source: {model: test/tiny_cnn}",
                                                     "source: {model: test/tiny_cnn, head_init: normal}")))
    assert good.pairs[0].source.as_dict("model")["head_init"] == "normal"
    path = write_suite(TINY_SUITE.replace("source: {model: test/tiny_cnn}",
                                          "source: {model: test/tiny_cnn, head_init: xavier}"), name="bad.yaml")
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:6: pairs[0].source.head_init:") and "'auto', 'pytorch' or 'normal'" in err


@pytest.mark.parametrize(("init", "zero_bias"), [("normal", True), ("auto", False)])
def test_the_run_builds_its_heads_with_the_suites_head_init(write_suite, init, zero_bias):
    from harness.plan import expand
    from harness.run.execute import build

    suite = TINY_SUITE.replace("source: {model: test/tiny_cnn}", f"source: {{model: test/tiny_cnn, head_init: {init}}}")
    spec = next(s for s in expand(load_suite(write_suite(suite))) if s.strategy == "full_finetune")
    _, model, _, _ = build(spec, torch.device("cpu"))
    assert model.head_init == init
    assert (torch.count_nonzero(model.head.bias) == 0) == zero_bias


@pytest.mark.parametrize("name", ["tiny_bert", "tiny_cnn"])
def test_pytorch_head_draws_exactly_what_a_plain_nn_linear_did(name):
    """``head_init: pytorch`` (and vision's auto) keep the results of records made before the
    option existed: the same tensors and the same RNG state afterwards."""
    backbone = SOURCES.get("test").build(name, {}, pretrained=True)
    torch.manual_seed(3)
    model = TransferModel(backbone, 7, dropout=0.1, head_init="pytorch" if name == "tiny_bert" else "auto")
    after = torch.rand(3)
    torch.manual_seed(3)
    torch.nn.Dropout(0.1)
    old = torch.nn.Linear(backbone.feature_dim, 7)
    assert torch.equal(model.head.weight, old.weight) and torch.equal(model.head.bias, old.bias)
    assert torch.equal(torch.rand(3), after)


def test_the_record_says_which_init_the_head_got_and_the_probe_cache_ignores_it(write_suite, tmp_path):
    from harness.plan import expand
    from harness.run.execute import ExecOptions, execute

    records = {}
    for init in ("auto", "normal"):
        suite = TINY_SUITE.replace("source: {model: test/tiny_cnn}", f"source: {{model: test/tiny_cnn, head_init: {init}}}")
        spec = next(s for s in expand(load_suite(write_suite(suite, name=f"{init}.yaml")))
                    if s.strategy == "linear_probe" and s.seed == 0)
        records[init] = execute(spec, ExecOptions(cache_dir=tmp_path / "cache"))
    assert records["auto"].status == records["normal"].status == "ok"
    assert records["auto"].config["notes"]["head_init"] == {"init": "pytorch"}
    assert records["normal"].config["notes"]["head_init"] == {"init": "normal", "std": 0.02}
    # the features do not depend on the head: the second run reads the first one's cache
    assert records["auto"].config["notes"]["feature_cache_hit"] is False
    assert records["normal"].config["notes"]["feature_cache_hit"] is True
