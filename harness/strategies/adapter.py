"""``adapter``: Houlsby bottleneck adapters (Houlsby et al. 2019); only adapters (+ norms) and head train.

An adapter is ``x + up(act(down(x)))`` with a bottleneck of ``dim // reduction_factor``;
``up`` starts at zero, so the adapted model starts exactly at the source.

Where they go (our design, generic over architectures):

* Transformers (BERT family, timm ViT, …): after each layer's attention output projection
  and after its feed-forward output projection, before the residual add and LayerNorm —
  Houlsby's two placements. Found by name suffix inside the backbone blocks
  (``output.dense`` for BERT-family, ``attn.proj``/``mlp.fc2`` for timm ViT, …).
* CNNs: one convolutional adapter (1×1 convs) after every stage, i.e. every backbone
  block but the stem — residual adapters in the spirit of Rebuffi et al. (2017). A model
  with blocks but no known projections (torchvision's ViT, whose attention is an
  ``nn.MultiheadAttention``) gets a token adapter after each block the same way.

Adapters attach as a child module (``harness_adapter``) of the module they follow, through a
forward hook: the base weights keep their names and values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.sources.base import ImageInput
from harness.strategies.base import Strategy, backbone_blocks, freeze_all_but_head
from harness.strategies.lora import layers, matches

if TYPE_CHECKING:
    import torch
    from torch import nn

SUBLAYER_SUFFIXES = ("output.dense", "out_lin", "lin2", "attn.proj", "mlp.fc2", "o_proj", "out_proj", "down_proj")
CHILD = "harness_adapter"


def _apply_adapter(module: nn.Module, inputs, output):
    # A module-level hook (not a closure) so deep copies of the model use their own adapter.
    return getattr(module, CHILD)(output)


class AdapterParams(Params):
    reduction_factor: int = Field(16, ge=1, description="bottleneck size = dim // reduction_factor (at least 1)")
    norms: bool = Field(True, description="also train normalisation layers (Houlsby trains LayerNorms)")
    target_modules: list[str] | None = Field(
        None, min_length=1, description="Linear module name suffixes to follow (default: attention/FFN outputs)")


def sublayers(model, suffixes) -> list[tuple[str, nn.Linear]]:
    """Linear modules inside the backbone blocks whose names end with one of ``suffixes``."""
    from torch import nn

    return [(f"block{i}.{name}", m) for i, block in enumerate(backbone_blocks(model))
            for name, m in layers(block, (nn.Linear,)) if matches(name, suffixes)]


def dry_batch(backbone, device: torch.device) -> dict[str, torch.Tensor]:
    """One tiny input the backbone accepts (zeros), to learn its blocks' output shapes."""
    import torch

    spec = backbone.input_spec
    if isinstance(spec, ImageInput):
        return {"pixel_values": torch.zeros(1, spec.channels, spec.size, spec.size, device=device)}
    ids = torch.zeros(1, 4, dtype=torch.long, device=device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def block_outputs(model, blocks: list[nn.Module]) -> list[tuple[int, bool]]:
    """Per block, (feature dim, is a conv map): channels of a (B, C, H, W) output, else the last
    dim (ViT/encoder layers). From one dry forward in eval mode, so no statistic moves."""
    import torch

    shapes: dict[int, tuple[int, ...]] = {}

    def record(k: int):
        def hook(module, inputs, output) -> None:  # returns None: the output stays as it is
            out = output[0] if isinstance(output, tuple) else output
            shapes.setdefault(k, tuple(out.shape))
        return hook

    hooks = [b.register_forward_hook(record(k)) for k, b in enumerate(blocks)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.backbone(dry_batch(model.backbone, next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return [(shapes[k][1], True) if len(shapes[k]) == 4 else (shapes[k][-1], False) for k in range(len(blocks))]


@STRATEGIES.register("adapter", description="Houlsby bottleneck adapters after attention/FFN (transformers) or stages (CNNs)")
class HoulsbyAdapter(Strategy):
    """Insert bottleneck adapters; train them, the norms (optional) and the head."""

    Params = AdapterParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.sites: list[str] = []

    def bottleneck(self, dim: int) -> int:
        return max(1, dim // self.params.reduction_factor)

    def prepare(self, model):
        from torch import nn

        from harness.strategies.nets import NORMS, Adapter

        found = sublayers(model, self.params.target_modules or SUBLAYER_SUFFIXES)
        if self.params.target_modules and not found:
            raise ValueError(f"adapter: no Linear module in the backbone blocks matches {self.params.target_modules}")
        if found:
            sites = [(name, m, Adapter(m.out_features, self.bottleneck(m.out_features))) for name, m in found]
        else:  # a CNN (or a model without known projections): after each block but the stem
            stages = [(f"block{i}", b) for i, b in enumerate(backbone_blocks(model)) if i > 0
                      and type(b).forward is not nn.Module.forward]  # a ModuleList groups, it does not run
            if not stages:
                raise TypeError("adapter: the backbone has no attention/FFN projections and no stages to follow")
            outputs = block_outputs(model, [b for _, b in stages])
            sites = [(name, b, Adapter(dim, self.bottleneck(dim), conv=conv))
                     for (name, b), (dim, conv) in zip(stages, outputs, strict=True)]
        freeze_all_but_head(model)
        if self.params.norms:
            for m in model.backbone.modules():
                if isinstance(m, NORMS):
                    m.requires_grad_(True)
        for _, module, adapter in sites:
            adapter.to(next(module.parameters()).device)
            module.add_module(CHILD, adapter)
            module.register_forward_hook(_apply_adapter)
        self.sites = [name for name, _, _ in sites]

    def report(self, model):
        return {"adapters": len(self.sites), "adapter_sites": self.sites[:64]}
