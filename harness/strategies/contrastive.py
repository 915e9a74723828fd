"""``contrastive``: metric learning with the contrastive margin loss of Hadsell, Chopra & LeCun
(2006, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR, eq. 4), the form CCSA
uses too (Motiian et al., 2017, eqs. 4-5):

    L = mean_similar ½ d(x_i, x_j)² + mean_dissimilar ½ max(0, m − d(x_i, x_j))²

with d the Euclidean distance between L2-normalised pooled features (so d ∈ [0, 2] and the margin
``margin`` means the same for every backbone), added to the task loss with ``weight``. The papers
sum over pairs; each kind of pair is averaged here, so ``weight`` does not scale with the batch. Same-class pairs are pulled together and different-class pairs pushed
beyond the margin:

* **across domains** when the target offers a few labelled target-domain examples
  (``TargetData.extra["target_labeled"]``, e.g. ``sklearn/digits`` with ``target_shots: k``):
  pairs of a labelled source example and a labelled target-domain example — CCSA's semantic
  alignment and separation (Motiian et al., 2017, "Unified Deep Supervised Domain Adaptation and
  Generalization", ICCV);
* **within the source** otherwise: pairs inside the labelled batch (a supervised-contrastive
  regulariser of the source features; no domain is aligned).

Token tasks pair the labelled words (first sub-words) of the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import Strategy

if TYPE_CHECKING:
    import torch

TARGET_LABELED = "target_labeled"


class ContrastiveParams(Params):
    margin: float = Field(1.0, gt=0, le=2, description="m: distance beyond which a different-class pair costs nothing "
                          "(features are L2-normalised: d ∈ [0, 2])")
    weight: float = Field(0.1, ge=0, description="weight of the contrastive loss beside the task loss")
    target_batch_size: int | None = Field(None, ge=1, description="labelled target-domain examples per step "
                                          "(default: batch_size)")


def contrastive_loss(a: torch.Tensor, ya: torch.Tensor, b: torch.Tensor, yb: torch.Tensor, margin: float,
                     exclude_diagonal: bool = False) -> torch.Tensor:
    """mean_{same class} ½d² + mean_{different class} ½max(0, m − d)² over the pairs (a_i, b_j), on
    L2-normalised rows (Hadsell et al. 2006, eq. 4; a set with no pair of a kind contributes 0 for it)."""
    import torch
    import torch.nn.functional as F

    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    d2 = torch.cdist(a, b).pow(2)
    d = (d2 + 1e-12).sqrt()  # the epsilon keeps the push term's gradient finite where two rows coincide
    same = ya.unsqueeze(1) == yb.unsqueeze(0)
    keep = torch.ones_like(same)
    if exclude_diagonal:
        keep.fill_diagonal_(False)
    pos, neg = same & keep, ~same & keep
    zero = d.sum() * 0
    pull = 0.5 * d2[pos].mean() if pos.any() else zero
    push = 0.5 * F.relu(margin - d[neg]).pow(2).mean() if neg.any() else zero
    return pull + push


def rows(features: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature rows, their labels): one per image, or one per labelled word of a token batch."""
    labels = batch["labels"]
    if features.ndim == 3:
        mask = labels != -100
        return features[mask], labels[mask]
    return features, labels


@STRATEGIES.register("contrastive", description="contrastive margin loss on features: same class pulled, different pushed past m (across domains with target shots: CCSA)")
class Contrastive(Strategy):
    """Fine-tuning + ``weight`` × the contrastive margin loss."""

    Params = ContrastiveParams
    uses_target_labels = True  # when the target gives target_shots

    def __init__(self, params, train):
        super().__init__(params, train)
        self.target = None
        self.mode = "within source"
        self.last: torch.Tensor | None = None

    def adapt(self, model, data, ctx):
        split = data.extra.get(TARGET_LABELED)
        if split is not None and len(split):
            bs = self.params.target_batch_size or self.train.batch_size
            self.target = ctx.stream(split, bs, 104_729)
            self.mode = "across domains"
            ctx.notes["target_labeled_examples"] = len(split)
        ctx.notes["contrastive_pairs"] = self.mode
        return model, data

    @classmethod
    def control(cls, params) -> str | None:
        return "weight 0: the pipeline without its contrastive loss" if params.weight == 0 else None

    def bn_statistics(self) -> str:
        # across domains, the labelled target-domain batches go through the model in train mode too
        return "labelled" if self.target is None else "labelled+target"

    def extra_loss(self, model, batch, out):
        a, ya = rows(out["features"], batch)
        if self.target is not None:
            tb = next(self.target)  # on the run's device
            b, yb = rows(model(tb)["features"], tb)
            loss = contrastive_loss(a, ya, b, yb, self.params.margin)
        else:
            loss = contrastive_loss(a, ya, a, ya, self.params.margin, exclude_diagonal=True)
        self.last = loss.detach()
        return self.params.weight * loss

    def report(self, model):
        out = {"pairs": self.mode}
        if self.last is not None:
            out["contrastive_loss_last"] = round(float(self.last), 6)
        return out
