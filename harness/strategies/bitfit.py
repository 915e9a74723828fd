"""``bitfit``: only bias terms train (Ben Zaken, Ravfogel & Goldberg 2022), plus the new head.

Every parameter named ``bias`` in the backbone trains — the paper's "all bias terms", the
normalisation layers' shifts included. ``norms: true`` also trains the normalisation layers'
scales (a labelled variant, not BitFit as published). BatchNorm running statistics follow the
``norm_stats`` policy: with only its shift training, a BatchNorm keeps the source's statistics.
"""

from __future__ import annotations

from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import Strategy, freeze_all_but_head


class BitFitParams(Params):
    norms: bool = Field(False, description="also train normalisation layers' scales (BatchNorm, LayerNorm, …): "
                        "a variant, not BitFit as published")


@STRATEGIES.register("bitfit", description="bias terms only (as the paper), plus the head; norms: true adds norm scales")
class BitFit(Strategy):
    """Every ``*.bias`` of the backbone trains; with ``norms`` also every normalisation layer's weights."""

    Params = BitFitParams

    def prepare(self, model):
        from harness.strategies.nets import NORMS

        freeze_all_but_head(model)
        for module in model.backbone.modules():
            for name, p in module.named_parameters(recurse=False):
                if name == "bias" or (self.params.norms and isinstance(module, NORMS)):
                    p.requires_grad_(True)

    def report(self, model):
        return {"trains": "biases and norm scales" if self.params.norms else "biases"}
