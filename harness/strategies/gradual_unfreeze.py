"""``gradual_unfreeze``: top-down unfreezing, one more block per epoch (ULMFiT, Howard & Ruder 2018)."""

from __future__ import annotations

import math

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
    blocks_per_epoch: int | None = Field(
        None, ge=1, description="blocks unfrozen at the start of each later epoch (default: as many as reach every "
        "block by the last epoch)")


@STRATEGIES.register("gradual_unfreeze", description="head first, then more blocks each epoch, top down, all by the last epoch (ULMFiT)")
class GradualUnfreeze(Strategy):
    """Epoch ``e`` of ``E`` trains the head and the top ``initial_blocks + ⌈(depth − initial_blocks)·e/(E−1)⌉``
    blocks, so the last epoch trains every block whatever the number of epochs (Howard & Ruder
    unfreeze one layer group per epoch; fewer epochs than blocks unfreeze several at a time). A
    ``max_steps`` that ends training before the last epoch ends it before every block trained. With
    ``blocks_per_epoch`` set, epoch ``e`` trains ``initial_blocks + e·blocks_per_epoch`` instead. A
    one-epoch budget has no later epoch to unfreeze into: every block trains from the start."""

    Params = GradualParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.history: list[dict[str, int]] = []  # per epoch: blocks unfrozen, trainable params

    @classmethod
    def check(cls, params, pair, suite):
        return blocks_beyond_depth(pair, "initial_blocks", params.initial_blocks)

    def unfrozen(self, epoch: int, depth: int) -> int:
        """How many top blocks train in ``epoch`` (0-based)."""
        first = min(depth, self.params.initial_blocks)
        if self.params.blocks_per_epoch is not None:
            return min(depth, first + epoch * self.params.blocks_per_epoch)
        epochs = self.train.epochs
        if epochs <= 1:
            return depth
        return min(depth, first + math.ceil((depth - first) * epoch / (epochs - 1)))

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
        depth = len(backbone_blocks(model))
        reached = max((h["unfrozen_blocks"] for h in self.history), default=0)
        return {"unfreeze_schedule": self.history, "blocks": depth, "reached_every_block": reached >= depth}
