"""``adabn``: Adaptive Batch Normalization (Li, Wang, Shi, Liu & Hou, 2016, "Revisiting Batch
Normalization For Practical Domain Adaptation", arXiv:1603.04779; Pattern Recognition 2018).

Source-only fine-tuning (every weight trains on the labelled domain, exactly as
``full_finetune``), then, for every evaluation on the evaluated domain, each BatchNorm layer's
running mean and variance are re-estimated on the unlabeled target-domain data: every
BatchNorm's statistics reset, momentum ``None`` (a cumulative average over the batches), the
whole unlabeled split passed through the model once in order, without gradients, with every other
module in inference mode (no dropout). The weights are the source-only model's; only the
normalisation statistics move. The source statistics come back after the evaluation, so
training continues as ``full_finetune`` would and each evaluation re-estimates from scratch.

It is the control a DA row needs: DANN, CORAL, MMD and importance weighting pass unlabeled target
batches through the model in train mode, so their BatchNorm statistics mix both domains; AdaBN
measures what target statistics alone buy. A model without BatchNorm layers (a transformer) is
unchanged by it: the row is then source only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from harness.registry import STRATEGIES
from harness.strategies.domain import UNLABELED, UnlabeledParams, check_unlabeled
from harness.strategies.full_finetune import FullFinetune
from harness.targets.base import Split

if TYPE_CHECKING:
    import torch
    from torch import nn

def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def reestimate(model: nn.Module, split: Split, batch_size: int, device: torch.device) -> int:
    """Every BatchNorm's running statistics of ``model`` re-estimated on ``split`` (cumulative
    average over its batches, in order); every other module runs as in inference. Returns the
    batches seen."""
    import torch

    norms = batchnorms(model)
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # the cumulative average: every batch counts the same
        m.train()
    seen = 0
    try:
        with torch.no_grad():
            for batch in split.batches(batch_size):
                batch = {k: v.to(device) for k, v in batch.items()}
                model(batch)
                seen += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        for m, mode in modes:
            m.train(mode)
    return seen


@contextlib.contextmanager
def statistics_of(model: nn.Module, split: Split, batch_size: int, device: torch.device) -> Iterator[int]:
    """Inside: ``model``'s BatchNorm statistics re-estimated on ``split``; on exit, its own again."""
    saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in batchnorms(model)]
    try:
        yield reestimate(model, split, batch_size, device)
    finally:
        for m, mean, var, count in saved:
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)


class AdaBNParams(UnlabeledParams):
    """``unlabeled_batch_size``: target examples per batch while re-estimating (default: batch_size)."""


@STRATEGIES.register("adabn", description="AdaBN: source-only fine-tuning, BatchNorm statistics re-estimated on the unlabeled target data for evaluation")
class AdaBN(FullFinetune):
    """``full_finetune``, scored with BatchNorm statistics of the unlabeled target domain."""

    Params = AdaBNParams
    uses_unlabeled = True

    def __init__(self, params, train):
        import torch

        super().__init__(params, train)
        self.split: Split | None = None
        self.device = torch.device("cpu")
        self.reestimations = 0

    @classmethod
    def check(cls, params, pair, suite):
        return check_unlabeled("adabn", pair)

    def adapt(self, model, data, ctx):
        split = data.extra.get(UNLABELED)
        if split is None or not len(split):
            raise ValueError(f"adabn needs unlabeled target-domain data; set `{UNLABELED}:` on the target")
        self.split, self.device = split, ctx.device
        ctx.notes["unlabeled_examples"] = len(split)
        return model, data

    @contextlib.contextmanager
    def evaluating(self, model):
        assert self.split is not None, "adapt() was not called"
        if not batchnorms(model):  # a transformer: nothing to re-estimate, no pass over the target data
            yield
            return
        with statistics_of(model, self.split, self.params.unlabeled_batch_size or self.train.batch_size,
                           self.device) as batches:
            self.reestimations += 1
            self.batches = batches
            yield

    def bn_statistics(self) -> str:
        return "target"

    @classmethod
    def control(cls, params) -> str:
        return "source only + target BatchNorm statistics (AdaBN)"

    def report(self, model):
        return {"adabn": {"reestimations": self.reestimations, "batchnorms": len(batchnorms(model)),
                          "batches_per_reestimation": getattr(self, "batches", 0)}}
