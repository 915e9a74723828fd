"""``layerwise_lr_decay``: every weight trains, at ``lr × decay^depth`` (depth counted from the head).

The head has depth 0, the top backbone block depth 1, …, the stem/embeddings depth ``n``
(ELECTRA, Clark et al. 2020; BEiT, Bao et al. 2022). Backbone weights outside every block
(a ViT's ``cls_token``/``pos_embed``) sit with the embeddings at depth ``n``.
"""

from __future__ import annotations

from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import Strategy, backbone_blocks, decay_groups


class LLRDParams(Params):
    decay: float = Field(0.75, gt=0, le=1, description="lr multiplier per block below the head")


def depth_of_params(model) -> list[tuple[int, list[tuple[str, object]]]]:
    """(depth, named params) from the head (0) down to the stem (n), every param exactly once."""
    blocks = backbone_blocks(model)
    n = len(blocks)
    seen: set[int] = set()

    def take(named):
        out = [(name, p) for name, p in named if id(p) not in seen]
        seen.update(id(p) for _, p in out)
        return out

    layers = [(0, take(model.head.named_parameters(prefix="head")))]
    for i in range(n - 1, -1, -1):
        layers.append((n - i, take(blocks[i].named_parameters(prefix=f"block{i}"))))
    rest = take(model.named_parameters())
    if rest:
        layers[-1] = (n, layers[-1][1] + rest)
    return layers


@STRATEGIES.register("layerwise_lr_decay", description="all weights train at lr × decay^depth, depth counted from the head")
class LayerwiseLRDecay(Strategy):
    """Pretrained init, all weights train; lower blocks get geometrically smaller learning rates."""

    Params = LLRDParams

    def param_groups(self, model):
        groups = []
        for depth, named in depth_of_params(model):
            named = [(n, p) for n, p in named if p.requires_grad]
            groups += decay_groups(named, self.train.lr * self.params.decay ** depth, self.train.weight_decay,
                                   depth=depth)
        return groups

    def report(self, model):
        n = len(model.blocks())
        return {"lr_by_depth": {d: self.train.lr * self.params.decay ** d for d in range(n + 1)}}
