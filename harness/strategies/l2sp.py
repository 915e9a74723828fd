"""``l2sp``: fine-tune toward the source weights, α/2‖w − w₀‖² + β/2‖head‖² (Li, Grandvalet & Davoine 2018).

The two penalties are the regularisation: decoupled weight decay (``weight_decay``) would pull the
same weights toward zero as well, so it is off for every weight of an l2sp run unless
``stack_weight_decay: true`` asks for both (``harness validate`` then warns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import Strategy

if TYPE_CHECKING:
    import torch


class L2SPParams(Params):
    alpha: float = Field(0.01, ge=0, description="weight of α/2‖w − w₀‖² on the backbone (w₀: source weights)")
    beta: float = Field(0.01, ge=0, description="weight of β/2‖w‖² on the new head")
    stack_weight_decay: bool = Field(False, description="also apply the training config's decoupled weight_decay "
                                     "(off: the penalties replace it)")


@STRATEGIES.register("l2sp", description="all weights train, pulled toward the source weights: α/2‖w−w₀‖² + β/2‖head‖²")
class L2SP(Strategy):
    """Full fine-tuning with the L2-SP penalty: the starting point, not zero, is the prior."""

    Params = L2SPParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.start: dict[str, torch.Tensor] = {}

    @classmethod
    def warnings(cls, params, pair, suite, train):
        if params.stack_weight_decay and train.weight_decay > 0:
            return [f"weight_decay={train.weight_decay} is applied on top of the L2-SP penalties "
                    "(stack_weight_decay: true): the backbone is pulled toward both w₀ and 0"]
        return []

    def prepare(self, model):
        super().prepare(model)
        self.start = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}

    def param_groups(self, model):
        groups = super().param_groups(model)
        if not self.params.stack_weight_decay:
            for g in groups:
                g["weight_decay"] = 0.0
        return groups

    def penalty(self, model) -> torch.Tensor:
        """α/2 Σ‖w − w₀‖² over backbone weights + β/2 Σ‖w‖² over head weights (float32)."""
        import torch

        first = next(model.parameters())
        total = torch.zeros((), device=first.device, dtype=torch.float32)
        for name, p in model.backbone.named_parameters():
            if not p.requires_grad:
                continue
            w0 = self.start[name]
            if w0.device != p.device:
                w0 = self.start[name] = w0.to(p.device)
            total = total + (self.params.alpha / 2) * (p.float() - w0.float()).pow(2).sum()
        for p in model.head.parameters():
            total = total + (self.params.beta / 2) * p.float().pow(2).sum()
        return total

    def extra_loss(self, model, batch, out):
        return self.penalty(model)

    def report(self, model):
        import torch

        with torch.no_grad():
            drift = sum(float((p.float() - self.start[n].to(p.device).float()).pow(2).sum())
                        for n, p in model.backbone.named_parameters())
        return {"sq_distance_to_source": drift,
                "weight_decay_applied": self.train.weight_decay if self.params.stack_weight_decay else 0.0}
