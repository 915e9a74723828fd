"""``partial_finetune``: only the last ``trainable_blocks`` backbone blocks and the head train."""

from __future__ import annotations

from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import Strategy, backbone_blocks, blocks_beyond_depth, freeze_all_but_head


class PartialParams(Params):
    trainable_blocks: int = Field(2, ge=0, description="backbone blocks that train, counted from the output end "
                                  "(0: head only)")


@STRATEGIES.register("partial_finetune", description="only the last trainable_blocks backbone blocks + head train")
class PartialFinetune(Strategy):
    """Freeze the backbone except its top ``trainable_blocks`` blocks (ResNet/EfficientNet stages,
    ViT/BERT layers, as listed by ``Backbone.blocks()``, stem/embeddings first)."""

    Params = PartialParams

    @classmethod
    def check(cls, params, pair, suite):
        return blocks_beyond_depth(pair, "trainable_blocks", params.trainable_blocks)

    def prepare(self, model):
        blocks = backbone_blocks(model)
        if self.params.trainable_blocks > len(blocks):
            raise ValueError(f"trainable_blocks={self.params.trainable_blocks} but the model has {len(blocks)} blocks")
        freeze_all_but_head(model)
        for block in blocks[len(blocks) - self.params.trainable_blocks:]:
            block.requires_grad_(True)

    def report(self, model):
        return {"blocks": len(model.blocks()), "trainable_blocks": self.params.trainable_blocks}
