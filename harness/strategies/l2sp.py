"""``l2sp``: fine-tune toward the source weights, α/2‖w − w₀‖² + β/2‖head‖² (Li, Grandvalet & Davoine 2018)."""

from __future__ import annotations

import torch
from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import Strategy


class L2SPParams(Params):
    alpha: float = Field(0.01, ge=0, description="weight of α/2‖w − w₀‖² on the backbone (w₀: source weights)")
    beta: float = Field(0.01, ge=0, description="weight of β/2‖w‖² on the new head")


@STRATEGIES.register("l2sp", description="all weights train, pulled toward the source weights: α/2‖w−w₀‖² + β/2‖head‖²")
class L2SP(Strategy):
    """Full fine-tuning with the L2-SP penalty: the starting point, not zero, is the prior."""

    Params = L2SPParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.start: dict[str, torch.Tensor] = {}

    def prepare(self, model):
        super().prepare(model)
        self.start = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}

    def penalty(self, model) -> torch.Tensor:
        """α/2 Σ‖w − w₀‖² over backbone weights + β/2 Σ‖w‖² over head weights (float32)."""
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
        with torch.no_grad():
            drift = sum(float((p.float() - self.start[n].to(p.device).float()).pow(2).sum())
                        for n, p in model.backbone.named_parameters())
        return {"sq_distance_to_source": drift}
