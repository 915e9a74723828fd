"""``hf/<dir>``: models saved with ``save_pretrained`` load offline, whatever their ``AutoModel``
constructor accepts; what was loaded is recorded."""

from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.registry import SOURCES
from harness.sources.hf import accepts_kwarg
from harness.sources.tiny import tiny_tokenizer


def save_tiny(tmp_path, kind: str, layers: int = 2):
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

    tok = tiny_tokenizer()
    if kind == "bert":
        cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)
        model = BertModel(cfg)
    else:
        cfg = DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=layers, n_heads=2, hidden_dim=64,
                               max_position_embeddings=64)
        model = DistilBertModel(cfg)
    path = tmp_path / kind
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_saved_model_loads_through_hf_dir(tmp_path, kind):
    path, saved = save_tiny(tmp_path, kind)
    backbone = SOURCES.get("hf").build(str(path), {"max_length": 48}, pretrained=True)
    # the weights are the saved ones, tensor for tensor
    loaded = dict(backbone.body.named_parameters())
    for name, p in saved.named_parameters():
        if name in loaded:
            assert torch.equal(loaded[name], p), name
    assert len(loaded) >= len([n for n in dict(saved.named_parameters()) if "pooler" not in n])
    enc = backbone.input_spec.tokenizer(["the cat", "a"], padding=True, return_tensors="pt")
    out = backbone({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    assert out.shape == (2, enc["input_ids"].shape[1], 32)
    assert len(backbone.blocks()) == 3  # embeddings + 2 layers
    assert backbone.info["local_dir"] is True and backbone.info["weights"] == str(path)
    assert backbone.info["max_length"] == 48 and backbone.input_spec.max_length == 48
    assert backbone.info["trust_remote_code"] is False


def test_pooling_layer_is_only_dropped_where_the_class_has_one(tmp_path):
    from transformers import AutoConfig

    bert, _ = save_tiny(tmp_path, "bert")
    distil, _ = save_tiny(tmp_path, "distilbert")
    assert accepts_kwarg(AutoConfig.from_pretrained(bert), "add_pooling_layer")
    assert not accepts_kwarg(AutoConfig.from_pretrained(distil), "add_pooling_layer")
    backbone = SOURCES.get("hf").build(str(bert), {}, pretrained=True)
    assert not any("pooler" in n for n, _ in backbone.body.named_parameters())


def test_depth_is_read_from_a_local_config_without_building(tmp_path):
    path, _ = save_tiny(tmp_path, "bert")
    assert SOURCES.get("hf").depth(str(path), {}) == 3  # embeddings + 2 layers, as blocks() counts
    assert SOURCES.get("hf").depth(str(tmp_path / "absent"), {}) is None


def test_scratch_build_is_random_init_of_the_same_architecture(tmp_path):
    path, saved = save_tiny(tmp_path, "bert")
    torch.manual_seed(0)
    backbone = SOURCES.get("hf").build(str(path), {}, pretrained=False)
    assert backbone.info["weights"] is None
    w = backbone.body.embeddings.word_embeddings.weight
    assert w.shape == saved.embeddings.word_embeddings.weight.shape
    assert not torch.equal(w, saved.embeddings.word_embeddings.weight)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(HarnessError, match="cannot load hf/"):
        SOURCES.get("hf").build(str(tmp_path / "nope"), {}, pretrained=True)


def test_length_chunks_cover_every_row_once_and_save_padding():
    from harness.sources.nets import length_chunks

    lengths = [5, 60, 7, 30, 12, 64, 9, 8, 40, 33, 6, 10, 22, 15, 11, 50]
    chunks = length_chunks(lengths, chunk_cost=96)
    assert sorted(i for idx, _ in chunks for i in idx) == list(range(16))
    assert all(w == max(lengths[i] for i in idx) for idx, w in chunks)
    assert sum(len(idx) * w for idx, w in chunks) + 96 * (len(chunks) - 1) < 16 * 64
    assert len(length_chunks([10] * 16, 96)) == 1 and length_chunks([7], 96) is None
    assert len(length_chunks(lengths, chunk_cost=10**9)) == 1


def tiny_body(kind: str):
    from transformers import (
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        RobertaConfig,
        RobertaModel,
    )

    small = dict(vocab_size=48, max_position_embeddings=66)
    if kind == "bert":
        return BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **small))
    if kind == "roberta":  # positions counted from the padding index, computed from input_ids when given
        return RobertaModel(RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64, pad_token_id=1, **small))
    return DistilBertModel(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **small))


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("embed_once", [True, False])
def test_chunked_forward_is_the_batch_forward_values_and_gradients(kind, embed_once, monkeypatch):
    from harness.sources.nets import hf_backbone

    torch.manual_seed(0)
    backbone = hf_backbone(tiny_body(kind), tiny_tokenizer(), 64, {})
    if not embed_once:
        monkeypatch.setattr(backbone, "embed_once_types", frozenset())
    backbone.train(False)
    lengths = [3, 40, 5, 22, 9, 38, 4, 12]
    ids = torch.randint(5, 40, (len(lengths), 40))
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 1 if kind == "roberta" else 0
    real = mask.bool()
    batch = {"input_ids": ids, "attention_mask": mask}
    lookups = []
    backbone.body.get_input_embeddings().register_forward_hook(lambda m, args, out: lookups.append(out.shape[0]))
    results = []
    for cost in (1, 10**9):  # chunked (one chunk per few rows) / one chunk
        backbone.chunk_cost = cost
        backbone.zero_grad()
        lookups.clear()
        out = backbone(batch)
        (out[real] ** 2).mean().backward()
        grads = {n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None}
        results.append((out.detach(), grads, list(lookups)))
    (chunked, g1, looked_up), (whole, g2, _) = results
    assert torch.allclose(chunked[real], whole[real], atol=1e-5)
    assert g1.keys() == g2.keys() and all(torch.allclose(g1[n], g2[n], atol=1e-5) for n in g1)
    # the words of the whole batch looked up once, or once per chunk
    assert looked_up == [len(lengths)] if embed_once else (len(looked_up) > 1 and sum(looked_up) == len(lengths))
