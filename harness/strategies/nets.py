"""The networks strategies add to a model: an adapter's bottleneck, DANN's gradient reversal,
importance weighting's domain classifier.

Kept apart from the strategy modules so that naming a strategy in a suite never imports torch:
the registries do not walk this module (:mod:`harness.registry`); a strategy imports it when a
run builds one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# what BitFit's and the adapter's `norms: true` train
NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


class Adapter(nn.Module):
    """Bottleneck ``x + up(act(down(x)))`` over the last dim (tokens) or the channels (conv maps)."""

    def __init__(self, dim: int, bottleneck: int, conv: bool = False):
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.down, self.act, self.up = layer(dim, bottleneck), nn.GELU(), layer(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


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


class DensityRatio(nn.Module):
    """The domain classifier and the weights it implies; trained by :meth:`update`."""

    def __init__(self, dim: int, hidden: int = 0, lr: float = 1e-2):
        super().__init__()
        out = nn.Linear(hidden or dim, 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), out) if hidden else out
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        self.last_loss: float | None = None

    def update(self, source: torch.Tensor, target: torch.Tensor) -> None:
        """One step of the classifier on detached features (source 0, target 1)."""
        with torch.enable_grad():
            x = torch.cat([source, target]).detach().to(self.dtype)
            y = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(x.device)
            loss = F.binary_cross_entropy_with_logits(self.net(x).squeeze(-1), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.last_loss = float(loss.detach())

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype  # fp32 in a run, whatever the autocast dtype of the features

    @torch.no_grad()
    def weights(self, source: torch.Tensor, n_target: int, clip: float) -> torch.Tensor:
        """w(x) for the rows of ``source``: odds × m/n, clipped, normalised to mean 1."""
        logit = self.net(source.detach().to(self.dtype)).squeeze(-1)
        w = torch.exp(logit) * (len(source) / max(1, n_target))  # D/(1−D) = exp(logit)
        w = w.clamp(max=clip)
        return w / w.mean().clamp_min(1e-12)

