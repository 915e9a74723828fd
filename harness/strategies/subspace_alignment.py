"""``subspace_alignment``: Subspace Alignment (Fernando, Habrard, Sebban & Tuytelaars, 2013,
"Unsupervised Visual Domain Adaptation Using Subspace Alignment", ICCV), on frozen features.

Closed form, no backbone training: the frozen backbone's features of the labelled (source)
training split and of the unlabeled target-domain examples are each standardised and reduced to
their top-``components`` PCA directions, X_S and X_T (d × k). The source basis is aligned to the
target's by M = X_Sᵀ X_T, the labelled features are projected as S · X_S · M and the target
domain's (val, test: the domain the pair is evaluated on) as T · X_T; then the linear probe's
L-BFGS logistic regression, C chosen on val (or by ``select_by``), is fitted on the aligned source (the paper used an
SVM / 1-NN; the probe keeps it comparable with ``linear_probe`` on the same cached features).
A cheap baseline beside the probe: what aligning second-order structure buys without training.

The features come from the probe's cache. Token tasks use the probe's word rows for the labelled
split and every non-padding token of the unlabeled tweets for the target basis.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import Field

from harness.registry import STRATEGIES
from harness.strategies.domain import UNLABELED, check_unlabeled
from harness.strategies.linear_probe import LinearProbe, ProbeParams
from harness.targets.base import TensorSplit

if TYPE_CHECKING:
    import torch


class SubspaceAlignmentParams(ProbeParams):
    components: int = Field(64, ge=1, description="PCA directions kept per domain (k; capped at the feature width)")


def pca_basis(x: torch.Tensor, k: int) -> torch.Tensor:
    """The top-``k`` principal directions of the rows of ``x`` (d × k, orthonormal columns)."""
    import torch

    centred = x - x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return vh[:k].T.contiguous()


def standardise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean) / std


class Alignment:
    """The fitted transform: each domain's standardisation, X_S · M for the source, X_T for the target."""

    def __init__(self, source: torch.Tensor, target: torch.Tensor, k: int):
        source, target = source.double(), target.double()
        k = min(k, source.shape[1], source.shape[0] - 1, target.shape[0] - 1)
        if k < 1:
            raise ValueError("subspace alignment needs at least 2 examples of each domain")
        self.k = k
        self.mean_s, self.std_s = source.mean(0), source.std(0).clamp_min(1e-8)
        self.mean_t, self.std_t = target.mean(0), target.std(0).clamp_min(1e-8)
        self.xs = pca_basis(standardise(source, self.mean_s, self.std_s), k)
        self.xt = pca_basis(standardise(target, self.mean_t, self.std_t), k)
        self.m = self.xs.T @ self.xt  # k × k: the source basis expressed in the target's

    def source(self, x: torch.Tensor) -> torch.Tensor:
        return (standardise(x.double(), self.mean_s, self.std_s) @ self.xs @ self.m).float()

    def target(self, x: torch.Tensor) -> torch.Tensor:
        return (standardise(x.double(), self.mean_t, self.std_t) @ self.xt).float()

    def divergence(self) -> float:
        """‖X_S M − X_T‖_F: how far apart the two subspaces were (0: the same subspace)."""
        import torch

        return float(torch.linalg.norm(self.xs @ self.m - self.xt))


@STRATEGIES.register("subspace_alignment", description="Subspace Alignment: PCA bases of both domains aligned in closed form, then the probe (frozen features, unlabeled target data)")
class SubspaceAlignment(LinearProbe):
    """The linear probe on source features aligned to the unlabeled target domain's PCA subspace."""

    Params = SubspaceAlignmentParams
    uses_unlabeled = True
    SOLVER = "PCA alignment + L-BFGS logistic regression"

    @classmethod
    def check(cls, params, pair, suite):
        problems = check_unlabeled("subspace_alignment", pair) + super().check(params, pair, suite)
        if params.solver != "lbfgs":
            problems.append("subspace_alignment fits its head with the L-BFGS probe: solver must be lbfgs")
        p = pair.target.params
        evaluated = p.get("eval_domain") or p.get("domain") or "original"
        if p.get(UNLABELED) and p[UNLABELED] != evaluated:
            problems.append(f"subspace_alignment projects val and test onto the unlabeled domain's subspace: "
                            f"the pair is evaluated on '{evaluated}' but its unlabeled data is '{p[UNLABELED]}' "
                            f"(set eval_domain: {p[UNLABELED]})")
        return problems

    def map_source(self, x):
        return self.align.source(x)

    def map_target(self, x):
        return self.align.target(x)

    def adapt(self, model, data, ctx):
        split = data.extra.get(UNLABELED)
        if split is None or not len(split):
            raise ValueError("subspace_alignment needs unlabeled target-domain data; set `unlabeled:` on the target")
        return super().adapt(model, data, ctx)

    def transform(self, model, data, feats, key, ctx):
        import torch

        with ctx.phase("feature"):
            target = ctx.frozen_rows(model.backbone, data.extra[UNLABELED], self.feature_batch_size())
        train = feats.splits["train"].tensors
        with ctx.phase("train"):
            align = Alignment(train["features"], target, self.params.components)
        splits = {}
        for name, s in feats.splits.items():
            mapped = align.source if name == "train" else align.target  # val and test: the evaluated domain
            splits[name] = TensorSplit({**s.tensors, "features": mapped(s.tensors["features"])}, s.sequences)
        model.head = torch.nn.Linear(align.k, model.head.out_features).to(ctx.device)  # the probe over k dims
        self.align = align  # the label-free validators map their rows with it (map_source, map_target)
        ctx.notes["subspace_alignment"] = {"components": align.k, "unlabeled_rows": len(target),
                                           "subspace_divergence": round(align.divergence(), 6)}
        return replace(feats, splits=splits), key.derived(transform={"subspace_alignment": align.k})
