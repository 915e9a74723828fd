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

from typing import TYPE_CHECKING

from pydantic import Field

from harness.registry import STRATEGIES
from harness.strategies.domain import UnlabeledParams, UsesUnlabeled, pooled

if TYPE_CHECKING:
    import torch

    from harness.strategies.nets import DensityRatio


class ImportanceWeightingParams(UnlabeledParams):
    clip: float = Field(10.0, gt=1, description="largest weight before normalising to mean 1")
    hidden: int = Field(0, ge=0, description="hidden width of the domain classifier (0: logistic regression)")
    classifier_lr: float = Field(1e-2, gt=0, description="the domain classifier's Adam learning rate (its own optimizer)")


def weighted_extra(logits: torch.Tensor, labels: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ (w_i − 1) ℓ_i / N: added to the loop's mean task loss it gives Σ w_i ℓ_i / N."""
    import torch.nn.functional as F

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
        from harness.strategies.nets import DensityRatio

        model, data = super().adapt(model, data, ctx)
        p = self.params
        self.ratio = DensityRatio(model.backbone.feature_dim, p.hidden, p.classifier_lr).to(ctx.device)
        return model, data

    def extra_loss(self, model, batch, out):
        import torch

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
