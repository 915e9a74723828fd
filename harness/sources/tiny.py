"""``test/…`` sources: tiny models built from configs, no download, for tests on CPU in seconds."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.registry import SOURCES
from harness.sources.base import ImageInput, Source, SourceParams


class TinyParams(SourceParams):
    image_size: int = Field(16, ge=8, le=64)
    max_length: int = Field(32, ge=8, le=128)


def tiny_tokenizer():
    """A word-piece tokenizer over a small fixed vocabulary, built in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)] + \
        [f"##{chr(c)}" for c in range(97, 123)] + [str(d) for d in range(10)] + ["the", "a", "in", "of", "##s"]
    vocab = list(dict.fromkeys(vocab))  # "a" and "##s" appear twice: ids must stay below len(vocab)
    tk = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    from tokenizers import normalizers, processors

    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


@SOURCES.register("test", description="tiny models built from configs for tests: tiny_cnn (image), tiny_bert (text)")
class Tiny(Source):
    Params = TinyParams
    names = ("tiny_cnn", "tiny_bert")

    def modality(self, name):
        return "image" if name == "tiny_cnn" else "text"

    def depth(self, name, params):
        return 3

    def build(self, name: str, params: dict[str, Any], pretrained: bool):
        import contextlib

        import torch

        from harness.sources.nets import TinyCNN, hf_backbone

        p = TinyParams.model_validate(params)
        # "Pretrained" tiny weights are a fixed-seed init (the same for every run); scratch
        # draws from the run's seeded RNG like any other source.
        with torch.random.fork_rng() if pretrained else contextlib.nullcontext():
            if pretrained:
                torch.manual_seed(1234)
            if name == "tiny_cnn":
                return TinyCNN(ImageInput(size=p.image_size))
            from transformers import BertConfig, BertModel

            tok = tiny_tokenizer()
            cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=p.max_length + 2)
            return hf_backbone(BertModel(cfg, add_pooling_layer=False), tok, p.max_length, {"weights": "random (test model)"})
