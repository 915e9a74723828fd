"""``dann``: domain-adversarial training (Ganin et al., 2016, "Domain-Adversarial Training of
Neural Networks", JMLR 17).

A domain classifier (a two-layer MLP) learns to tell the labelled domain's features from the
unlabeled target domain's, through a gradient-reversal layer: identity forward, gradient
multiplied by −λ backward, so the backbone learns features the classifier cannot separate
while the task head keeps them discriminative. λ follows the paper's schedule
λ = λ_max·(2 / (1 + exp(−γ·p)) − 1), p = training progress from 0 to 1.

The unlabeled data comes from the target (``TargetData.extra["unlabeled"]``): a target offers it
through an ``unlabeled:`` parameter (``sklearn/digits`` with ``unlabeled: shifted``; the test
targets too). Each training step draws one unlabeled batch (cycled, reshuffled with its own
seeded generator). Token features are mean-pooled over the attention mask before the domain
classifier; image features are already pooled.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from harness.config.schema import Params
from harness.registry import STRATEGIES, TARGETS
from harness.strategies.base import Strategy, decay_groups
from harness.targets.base import Split

UNLABELED = "unlabeled"


class DannParams(Params):
    domain_weight: float = Field(1.0, ge=0, description="weight of the domain-classification loss")
    hidden: int = Field(256, ge=1, description="hidden width of the domain classifier")
    gamma: float = Field(10.0, gt=0, description="λ schedule steepness: λ = λ_max·(2/(1+exp(−γ·p)) − 1)")
    lambda_max: float = Field(1.0, gt=0, description="λ at the end of training")
    unlabeled_batch_size: int | None = Field(None, ge=1, description="unlabeled examples per step (default: batch_size)")


class GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by −λ."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float) -> torch.Tensor:
    return GradReverse.apply(x, lambd)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule: 0 at the start, → 1 as ``progress`` → 1."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def pooled(features: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One vector per example: token features are averaged over the attention mask."""
    if features.ndim == 3:
        mask = batch["attention_mask"].unsqueeze(-1).to(features.dtype)
        return (features * mask).sum(1) / mask.sum(1).clamp_min(1)
    return features


def cycle(split: Split, batch_size: int, generator: torch.Generator):
    """Shuffled batches of ``split`` forever (a fresh order each pass)."""
    while True:
        yield from split.batches(batch_size, shuffle=True, generator=generator)


def unlabeled_targets() -> list[str]:
    """Target namespaces whose params offer unlabeled data (an ``unlabeled`` key)."""
    return [e.name for e in TARGETS.entries() if UNLABELED in getattr(e.obj.Params, "model_fields", {})]


@STRATEGIES.register("dann", description="domain-adversarial training: gradient-reversal domain classifier on unlabeled target-domain data")
class Dann(Strategy):
    """Task loss + a domain classifier behind a gradient-reversal layer (Ganin et al., 2016)."""

    Params = DannParams
    uses_unlabeled = True

    def __init__(self, params, train):
        super().__init__(params, train)
        self.domain_classifier: nn.Module | None = None
        self.calls, self.total = 0, 1
        self.last: dict[str, Any] = {}

    @classmethod
    def check(cls, params, pair, suite):
        if pair.target.params.get(UNLABELED):
            return []
        ref = pair.target.ref
        if UNLABELED in TARGETS.get(pair.target.namespace).Params.model_fields:
            return [f"dann needs unlabeled target-domain data: set `{UNLABELED}:` on target '{ref}' (e.g. unlabeled: shifted)"]
        return [f"dann needs unlabeled target-domain data, and target '{ref}' offers none "
                f"(targets with an `{UNLABELED}:` option: {', '.join(unlabeled_targets()) or 'none'})"]

    def adapt(self, model, data, ctx):
        from harness.run.seed import data_generator

        split = data.extra.get(UNLABELED)
        if split is None or not len(split):
            raise ValueError("dann needs unlabeled target-domain data (TargetData.extra['unlabeled']); "
                             f"set `{UNLABELED}:` on the target")
        dim, hidden = model.backbone.feature_dim, self.params.hidden
        self.domain_classifier = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1)).to(ctx.device)
        bs = self.params.unlabeled_batch_size or self.train.batch_size
        # its own stream: the labelled batches' order does not change with or without dann
        self.unlabeled = cycle(split, bs, data_generator(ctx.seed + 7919))
        cfg = self.train
        micro = cfg.epochs * max(1, math.ceil(len(data.splits["train"]) / cfg.batch_size))
        self.total = max(1, min(micro, cfg.max_steps * cfg.grad_accum) if cfg.max_steps else micro)
        self.calls = 0
        ctx.notes["unlabeled_examples"] = len(split)
        return model, data

    def param_groups(self, model):
        named = [(f"domain_classifier.{n}", p) for n, p in self.domain_classifier.named_parameters()]
        return super().param_groups(model) + decay_groups(named, self.train.lr, self.train.weight_decay)

    def extra_loss(self, model, batch, out):
        from harness.run.loop import to_device

        lambd = self.params.lambda_max * dann_lambda(min(self.calls / self.total, 1.0), self.params.gamma)
        self.calls += 1
        features = out["features"]
        unlabeled = to_device(next(self.unlabeled), features.device)
        target = pooled(model(unlabeled)["features"], unlabeled)
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
