"""``bitfit``: only bias terms (and, by default, normalisation weights) train (Ben Zaken et al. 2022)."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import Strategy, freeze_all_but_head

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


class BitFitParams(Params):
    norms: bool = Field(True, description="also train normalisation layers' scale and shift (BatchNorm, LayerNorm, …)")


@STRATEGIES.register("bitfit", description="biases (and norm layers) only, plus the head")
class BitFit(Strategy):
    """Every ``*.bias`` of the backbone trains; with ``norms`` also every normalisation layer's weights."""

    Params = BitFitParams

    def prepare(self, model):
        freeze_all_but_head(model)
        for module in model.backbone.modules():
            for name, p in module.named_parameters(recurse=False):
                if name == "bias" or (self.params.norms and isinstance(module, NORMS)):
                    p.requires_grad_(True)
