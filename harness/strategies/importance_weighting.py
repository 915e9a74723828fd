"""``importance_weighting``: re-weight the labelled (source) examples toward the target domain by
the density ratio w(x) = p_t(x) / p_s(x), estimated discriminatively (Bickel et al., 2007,
"Discriminative Learning for Differing Training and Test Distributions", ICML; on deep features
as in IWAN, Zhang et al., 2018, CVPR).

A domain classifier D (logistic regression on the backbone's pooled features, or a small MLP with
``hidden``) learns, with its own optimizer, to tell an unlabeled target-domain batch (label 1)
from the labelled batch (label 0), on **detached** features: it never moves the backbone. Its
odds give the ratio, corrected for the batch sizes m (source) and n (target):

    w(x) = D(x) / (1 − D(x)) · m / n

clipped at ``clip`` (a few examples must not carry the batch), normalised to mean 1 over the
batch, and detached. The task loss becomes Σ_i w_i ℓ_i / N over the batch's N labelled positions
(``extra_loss`` adds Σ (w_i − 1) ℓ_i / N to the loop's mean); a token task weights each token
by its sentence's w. At the start D outputs ½ (its output layer starts at zero): every weight is
1 and the run is plain fine-tuning until D has learnt something.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from harness.registry import STRATEGIES
from harness.strategies.domain import UnlabeledParams, UsesUnlabeled, pooled


class ImportanceWeightingParams(UnlabeledParams):
    clip: float = Field(10.0, gt=1, description="largest weight before normalising to mean 1")
    hidden: int = Field(0, ge=0, description="hidden width of the domain classifier (0: logistic regression)")
    classifier_lr: float = Field(1e-2, gt=0, description="the domain classifier's Adam learning rate (its own optimizer)")


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


def weighted_extra(logits: torch.Tensor, labels: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ (w_i − 1) ℓ_i / N: added to the loop's mean task loss it gives Σ w_i ℓ_i / N."""
    if logits.ndim == 3:  # tokens: each position takes its sentence's weight
        w = w.unsqueeze(1).expand(labels.shape)
        logits, labels, w = logits.flatten(0, 1), labels.flatten(), w.flatten()
    per = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="none")
    valid = labels != -100
    return ((w - 1) * per)[valid].sum() / valid.sum().clamp_min(1)


@STRATEGIES.register("importance_weighting", description="re-weight source examples by a domain classifier's density ratio p_t/p_s (unlabeled target data)")
class ImportanceWeighting(UsesUnlabeled):
    """Fine-tuning with each labelled example weighted by its estimated density ratio."""

    Params = ImportanceWeightingParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.ratio: DensityRatio | None = None
        self.last_w: torch.Tensor | None = None

    def adapt(self, model, data, ctx):
        model, data = super().adapt(model, data, ctx)
        p = self.params
        self.ratio = DensityRatio(model.backbone.feature_dim, p.hidden, p.classifier_lr).to(ctx.device)
        return model, data

    def extra_loss(self, model, batch, out):
        assert self.ratio is not None, "adapt() was not called"
        source = pooled(out["features"], batch)
        with torch.no_grad():  # the target batch only trains the classifier: no graph through the model
            target = self.target_features(model)
        self.ratio.update(source, target)
        w = self.ratio.weights(source, len(target), self.params.clip)
        self.last_w = w
        return weighted_extra(out["logits"], batch["labels"], w)

    def report(self, model):
        out = {"progress_steps": self.calls}
        if self.ratio is not None and self.ratio.last_loss is not None:
            out["domain_loss_last"] = round(self.ratio.last_loss, 6)
        if self.last_w is not None:
            out["weights_last"] = {"min": round(float(self.last_w.min()), 4), "max": round(float(self.last_w.max()), 4)}
        return out
