"""``coral``: Deep CORAL (Sun & Saenko, 2016, "Deep CORAL: Correlation Alignment for Deep Domain
Adaptation", ECCV workshops).

Task loss + λ · ℓ_CORAL, where ℓ_CORAL = 1/(4d²) · ‖C_s − C_t‖²_F is the distance between the
covariance matrices of the labelled (source) batch's features and an unlabeled target-domain
batch's, d the feature width:  C = (XᵀX − (1ᵀX)ᵀ(1ᵀX)/n) / (n − 1). Both domains' second-order
statistics are pulled together while the task head keeps the features discriminative. The paper
sets λ so that the two losses are about equal at the end of training (``weight``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.registry import STRATEGIES
from harness.strategies.domain import FeatureAlignment

if TYPE_CHECKING:
    import torch


def covariance(x: torch.Tensor) -> torch.Tensor:
    """The unbiased covariance of the rows of ``x`` (n × d)."""
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"CORAL needs at least 2 examples per batch, got {n}")
    mean = x.mean(0, keepdim=True)
    centred = x - mean
    return centred.T @ centred / (n - 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1/(4d²) ‖C_s − C_t‖²_F (Sun & Saenko, eq. 1)."""
    d = source.shape[1]
    diff = covariance(source) - covariance(target)
    return (diff * diff).sum() / (4 * d * d)


@STRATEGIES.register("coral", description="Deep CORAL: align the covariances of source and unlabeled target-domain features")
class Coral(FeatureAlignment):
    """Task loss + ``weight`` × CORAL between the labelled and an unlabeled target-domain batch."""

    def discrepancy(self, source, target):
        return coral_loss(source, target)
