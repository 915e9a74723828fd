"""``lora``: low-rank updates ΔW = (α/r)·B·A on chosen layers, through ``peft`` (Hu et al. 2022).

Default target modules, per architecture (override with ``target_modules``, name suffixes
as in ``peft``):

* BERT-family encoders: the attention ``query`` and ``value`` projections (the paper's
  choice); DistilBERT ``q_lin``/``v_lin``; LLaMA/BART-style ``q_proj``/``v_proj``.
* ViTs (timm): the fused ``qkv`` projection.
* CNNs (timm, test models): every ``Conv2d`` with ``groups == 1`` (depthwise convolutions
  are skipped: peft needs the rank divisible by their groups) and any ``Linear`` in the body.

The base weights stay frozen (and bit-identical); ``lora_B`` starts at zero, so the model
starts exactly at the source.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import Strategy, freeze_all_but_head

if TYPE_CHECKING:
    from torch import nn

TEXT_DEFAULTS = (("query", "value"), ("q_lin", "v_lin"), ("q_proj", "v_proj"), ("qkv",))


class LoRAParams(Params):
    r: int = Field(8, ge=1, le=1024, description="rank of the update")
    alpha: float = Field(16, gt=0, description="scale: ΔW is multiplied by alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA branch input")
    target_modules: list[str] | None = Field(
        None, min_length=1, description="module name suffixes to adapt (default: per architecture, see docs)")


def matches(name: str, suffixes) -> bool:
    """``name`` is one of ``suffixes`` or ends with ``.suffix`` (peft's rule)."""
    return any(name == s or name.endswith("." + s) for s in suffixes)


def layers(root: nn.Module, kinds: tuple[type, ...] | None = None) -> list[tuple[str, nn.Module]]:
    """Named layers of ``root`` that run through their own ``forward``: a Linear owned by an
    ``nn.MultiheadAttention`` is skipped (MHA reads its weight directly, so a wrapper or hook
    on it would never run). ``kinds`` defaults to Linear and Conv2d."""
    from torch import nn

    kinds = kinds or (nn.Linear, nn.Conv2d)
    owned = {id(m.out_proj) for m in root.modules() if isinstance(m, nn.MultiheadAttention)}
    return [(n, m) for n, m in root.named_modules() if isinstance(m, kinds) and id(m) not in owned]


def default_targets(body: nn.Module, modality: str) -> list[str]:
    """Full names of the modules LoRA adapts by default (see the module docstring)."""
    from torch import nn

    linear = [n for n, _ in layers(body, (nn.Linear,))]
    for suffixes in TEXT_DEFAULTS if modality == "text" else (("qkv",),):
        hits = [n for n in linear if matches(n, suffixes)]
        if hits:
            return hits
    if modality == "text":
        return linear
    return [n for n, m in layers(body) if not isinstance(m, nn.Conv2d) or m.groups == 1]


def resolve_targets(body: nn.Module, modality: str, target_modules: list[str] | None) -> list[str]:
    """Full module names to adapt; an error naming the candidates when nothing matches."""
    if target_modules is None:
        names = default_targets(body, modality)
    else:
        names = [n for n, _ in layers(body) if matches(n, target_modules)]
    if not names:
        known = sorted({n.rsplit(".", 1)[-1] for n, _ in layers(body)})
        raise ValueError(f"lora: no Linear/Conv2d module matches target_modules={target_modules}; "
                         f"layer names in this model: {', '.join(known[:30])}")
    return names


@STRATEGIES.register("lora", description="low-rank adapters through peft on attention (text/ViT) or conv layers (CNN)")
class LoRA(Strategy):
    """Inject LoRA into the backbone; only the LoRA matrices and the head train."""

    Params = LoRAParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.targets: list[str] = []

    def prepare(self, model):
        from peft import LoraConfig, inject_adapter_in_model

        body = model.backbone.body
        self.targets = resolve_targets(body, model.backbone.modality, self.params.target_modules)
        base = {id(p) for p in model.parameters()}
        config = LoraConfig(r=self.params.r, lora_alpha=self.params.alpha, lora_dropout=self.params.dropout,
                            target_modules="^(" + "|".join(map(re.escape, self.targets)) + ")$")
        inject_adapter_in_model(config, body)
        freeze_all_but_head(model)
        for p in model.parameters():
            if id(p) not in base:
                p.requires_grad_(True)

    def report(self, model):
        return {"lora_targets": len(self.targets), "lora_target_modules": self.targets[:64]}
