"""``dann``: domain-adversarial training (Ganin et al., 2016, "Domain-Adversarial Training of
Neural Networks", JMLR 17).

A domain classifier (a two-layer MLP) learns to tell the labelled domain's features from the
unlabeled target domain's, through a gradient-reversal layer: identity forward, gradient
multiplied by −λ backward, so the backbone learns features the classifier cannot separate
while the task head keeps them discriminative. λ follows the paper's schedule
λ = λ_max·(2 / (1 + exp(−γ·p)) − 1), p = training progress from 0 to 1.

The unlabeled target-domain data and its per-step batches: ``strategies/domain.py``. Token
features are mean-pooled over the attention mask before the domain classifier; image features are
already pooled.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field

from harness.registry import STRATEGIES
from harness.strategies.base import decay_groups
from harness.strategies.domain import UnlabeledParams, UsesUnlabeled, pooled

if TYPE_CHECKING:
    from torch import nn


class DannParams(UnlabeledParams):
    domain_weight: float = Field(1.0, ge=0, description="weight of the domain-classification loss")
    hidden: int = Field(256, ge=1, description="hidden width of the domain classifier")
    gamma: float = Field(10.0, gt=0, description="λ schedule steepness: λ = λ_max·(2/(1+exp(−γ·p)) − 1)")
    lambda_max: float = Field(1.0, gt=0, description="λ at the end of training")


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule: 0 at the start, → 1 as ``progress`` → 1."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


@STRATEGIES.register("dann", description="domain-adversarial training: gradient-reversal domain classifier on unlabeled target-domain data")
class Dann(UsesUnlabeled):
    """Task loss + a domain classifier behind a gradient-reversal layer (Ganin et al., 2016)."""

    Params = DannParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.domain_classifier: nn.Module | None = None
        self.last: dict[str, Any] = {}

    def adapt(self, model, data, ctx):
        from torch import nn

        model, data = super().adapt(model, data, ctx)
        dim, hidden = model.backbone.feature_dim, self.params.hidden
        self.domain_classifier = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1)).to(ctx.device)
        return model, data

    @classmethod
    def control(cls, params) -> str | None:
        return "domain_weight 0: the pipeline without its domain loss" if params.domain_weight == 0 else None

    def param_groups(self, model):
        named = [(f"domain_classifier.{n}", p) for n, p in self.domain_classifier.named_parameters()]
        return super().param_groups(model) + decay_groups(named, self.train.lr, self.train.weight_decay)

    def extra_loss(self, model, batch, out):
        import torch
        import torch.nn.functional as F

        from harness.strategies.nets import grad_reverse

        lambd = self.params.lambda_max * dann_lambda(self.progress(), self.params.gamma)
        features = out["features"]
        target = self.target_features(model)
        both = torch.cat([pooled(features, batch), target])
        domain = torch.cat([torch.zeros(len(both) - len(target)), torch.ones(len(target))]).to(features.device)
        logits = self.domain_classifier(grad_reverse(both, lambd)).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logits.float(), domain)
        self.last = {"lambda": lambd, "domain_loss": loss.detach()}
        return self.params.domain_weight * loss

    def report(self, model):
        out = {"lambda_final": round(self.last.get("lambda", 0.0), 6), "progress_steps": self.calls}
        if "domain_loss" in self.last:
            out["domain_loss_last"] = round(float(self.last["domain_loss"]), 6)
        if self.domain_classifier is not None:
            out["domain_classifier_params"] = sum(p.numel() for p in self.domain_classifier.parameters())
        return out
