"""What every domain-adaptation strategy shares: the unlabeled target-domain data, drawn batch by
batch beside the labelled batches, and the check that a pair has it.

The unlabeled data comes from the target (``TargetData.extra["unlabeled"]``): a target offers it
through an ``unlabeled:`` parameter (``sklearn/digits`` with ``unlabeled: shifted``,
``packaged/wnut16`` with ``unlabeled: noisy``). A strategy that uses it (``uses_unlabeled``) draws
one unlabeled batch per training step from its own seeded stream, so the labelled batches come
in the same order with or without it.

:class:`FeatureAlignment` is the family that adds a discrepancy between the labelled (source)
domain's features and the unlabeled (target) domain's to the task loss (CORAL, MMD); DANN learns
its discrepancy with a domain classifier.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from harness.config.schema import Params
from harness.registry import TARGETS
from harness.strategies.base import Strategy

if TYPE_CHECKING:
    import torch

UNLABELED = "unlabeled"


def pooled(features: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One vector per example: token features are averaged over the attention mask."""
    if features.ndim == 3:
        mask = batch["attention_mask"].unsqueeze(-1).to(features.dtype)
        return (features * mask).sum(1) / mask.sum(1).clamp_min(1)
    return features


def check_unlabeled(name: str, pair) -> list[str]:
    """The validate-time problem of a DA strategy on a pair without unlabeled target-domain data."""
    if pair.target.params.get(UNLABELED):
        return []
    ref = pair.target.ref
    own = UNLABELED in TARGETS.get(pair.target.namespace).Params.model_fields
    return [f"{name} needs unlabeled target-domain data: set `{UNLABELED}:` on target '{ref}' to "
            + ("one of its own domains (e.g. unlabeled: shifted) or " if own else "")
            + "another target standing for the target domain (e.g. unlabeled: {dataset: imagefolder/path/to/target})"]


class UnlabeledParams(Params):
    unlabeled_batch_size: int | None = Field(None, ge=1, description="unlabeled examples per step (default: batch_size)")


class UsesUnlabeled(Strategy):
    """A strategy that draws one unlabeled target-domain batch per training step."""

    uses_unlabeled = True
    STREAM_SALT = 7919  # the unlabeled stream's seed offset: its own generator, never the loop's

    def __init__(self, params, train):
        super().__init__(params, train)
        self.unlabeled: Iterator[dict[str, torch.Tensor]] | None = None
        self.calls, self.total = 0, 1

    @classmethod
    def name(cls) -> str:
        from harness.registry import STRATEGIES

        return next((e.name for e in STRATEGIES.entries() if e.obj is cls), cls.__name__.lower())

    @classmethod
    def check(cls, params, pair, suite):
        return check_unlabeled(cls.name(), pair)

    def adapt(self, model, data, ctx):
        split = data.extra.get(UNLABELED)
        if split is None or not len(split):
            raise ValueError(f"{self.name()} needs unlabeled target-domain data (TargetData.extra['unlabeled']); "
                             f"set `{UNLABELED}:` on the target")
        bs = self.params.unlabeled_batch_size or self.train.batch_size
        self.unlabeled = ctx.stream(split, bs, self.STREAM_SALT)
        self.total = ctx.planned_micro_steps(self.train, len(data.splits["train"]))
        self.calls = 0
        ctx.notes["unlabeled_examples"] = len(split)
        return model, data

    def bn_statistics(self) -> str:
        # the unlabeled batches go through the model in train mode too (each normalised by its own
        # batch's statistics): the running statistics it is scored with average both domains
        return "labelled+target"

    def progress(self) -> float:
        """Training progress in [0, 1] at this call (counts calls of :meth:`target_features`)."""
        return min(self.calls / self.total, 1.0)

    def target_features(self, model) -> torch.Tensor:
        """The pooled features of the next unlabeled batch (through the model as it trains; the
        stream's batches are on the run's device)."""
        assert self.unlabeled is not None, "adapt() was not called"
        batch = next(self.unlabeled)
        self.calls += 1
        return pooled(model(batch)["features"], batch)


class AlignmentParams(UnlabeledParams):
    weight: float = Field(1.0, ge=0, description="weight of the domain-discrepancy loss")


class FeatureAlignment(UsesUnlabeled):
    """Task loss + ``weight`` × a discrepancy between the labelled batch's features and an
    unlabeled target-domain batch's (computed in fp32)."""

    Params: ClassVar[type[Params]] = AlignmentParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.last: torch.Tensor | None = None
        self.skipped = 0  # steps whose batch (labelled or unlabeled) had one row

    def discrepancy(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def control(cls, params) -> str | None:
        return "weight 0: the pipeline without its alignment loss" if params.weight == 0 else None

    def extra_loss(self, model, batch, out):
        features = out["features"]
        target = self.target_features(model)
        source = pooled(features, batch)
        if min(len(source), len(target)) < 2:  # an epoch's last batch of one row: no covariance, no MMD
            self.skipped += 1
            return features.sum() * 0.0
        loss = self.discrepancy(source.float(), target.float())
        self.last = loss.detach()
        return self.params.weight * loss

    def report(self, model):
        out = {"progress_steps": self.calls, "discrepancy_skipped_steps": self.skipped}
        if self.last is not None:
            out["discrepancy_last"] = round(float(self.last), 6)
        return out
