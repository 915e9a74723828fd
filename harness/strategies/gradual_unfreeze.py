"""``gradual_unfreeze``: top-down unfreezing, one more block per epoch (ULMFiT, Howard & Ruder 2018)."""

from __future__ import annotations

from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import (
    Strategy,
    backbone_blocks,
    blocks_beyond_depth,
    decay_groups,
    freeze_all_but_head,
)


class GradualParams(Params):
    initial_blocks: int = Field(0, ge=0, description="backbone blocks trainable in the first epoch (0: head only)")
    blocks_per_epoch: int = Field(1, ge=1, description="blocks unfrozen at the start of each later epoch")


@STRATEGIES.register("gradual_unfreeze", description="head first, then one more block per epoch, top down (ULMFiT)")
class GradualUnfreeze(Strategy):
    """Epoch ``e`` trains the head and the top ``initial_blocks + e·blocks_per_epoch`` blocks."""

    Params = GradualParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.history: list[dict[str, int]] = []  # per epoch: blocks unfrozen, trainable params

    @classmethod
    def check(cls, params, pair, suite):
        return blocks_beyond_depth(pair, "initial_blocks", params.initial_blocks)

    def unfrozen(self, epoch: int, depth: int) -> int:
        """How many top blocks train in ``epoch`` (0-based)."""
        return min(depth, self.params.initial_blocks + epoch * self.params.blocks_per_epoch)

    def prepare(self, model):
        self._unfreeze(model, 0)

    def on_epoch_start(self, model, epoch):
        self._unfreeze(model, epoch)

    def _unfreeze(self, model, epoch: int) -> None:
        blocks = backbone_blocks(model)
        k = self.unfrozen(epoch, len(blocks))
        freeze_all_but_head(model)
        for block in blocks[len(blocks) - k:]:
            block.requires_grad_(True)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        entry = {"epoch": epoch, "unfrozen_blocks": k, "trainable_params": trainable}
        if self.history and self.history[-1]["epoch"] == epoch:
            self.history[-1] = entry
        else:
            self.history.append(entry)

    def param_groups(self, model):
        # Blocks frozen now train later: the optimizer must hold them from the start (a frozen
        # param has no grad, so AdamW skips it, weight decay included).
        params = [*model.head.named_parameters(prefix="head")]
        for i, block in enumerate(backbone_blocks(model)):
            params += block.named_parameters(prefix=f"block{i}")
        return decay_groups(params, self.train.lr, self.train.weight_decay)

    def report(self, model):
        return {"unfreeze_schedule": self.history}
