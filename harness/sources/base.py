"""The source contract: what a namespace checks without building anything, and what it builds.

A *source* namespace (``packaged``, ``timm``, ``hf``, ``test`` …) is a :class:`Source`:
it checks names without building anything (so ``validate`` stays fast) and builds a
:class:`~harness.sources.nets.Backbone`. The harness puts a fresh linear head on it:
:class:`~harness.sources.nets.TransferModel`. This module imports no torch: naming a source in
a suite (validate, plan, the first line of ``run``) costs no deep-learning import; the networks
live in :mod:`harness.sources.nets`, imported when a run builds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.config.schema import Params
from harness.errors import did_you_mean

HeadInit = Literal["auto", "pytorch", "normal"]


class SourceParams(Params):
    """Keys every source takes; each namespace's ``Params`` adds its own."""

    head_init: HeadInit = Field(
        "auto", description="the new head's weights: auto = the model family's own convention (Hugging Face "
        "text models: normal, std = config.initializer_range, zero bias, as AutoModelFor*Classification; "
        "vision: PyTorch's nn.Linear default, as timm's reset_classifier and torchvision); pytorch = "
        "nn.Linear's default (Kaiming-uniform); normal = N(0, initializer_range or 0.02), zero bias")
    pretrained: bool = Field(
        True, description="load the source's pretrained weights; false: the same architecture randomly "
        "initialised (drawn from the run's seed), a source to rank and transfer from like any other")
    layers: int | None = Field(
        None, ge=1, description="keep only the first k stages (CNN) or layers (transformer) after the stem or "
        "embeddings: a depth-truncated variant, whose features are the k-th stage's, pooled")
    pretrain: dict[str, Any] | None = Field(
        None, description="train this source on another task first, as a node of the plan graph (target, "
        "strategy, train, seed; checked when the suite loads): every run that transfers it starts from the "
        "weights that run exported, trained once per key and reused by every run and rerun")


def features_depend_on_seed(source: dict[str, Any]) -> bool:
    """A randomly initialised source's features are the seed's draw: a feature cache must key them by it.
    A ``pretrain:`` source's are not: its weights come from one run at the pretrain's own seed."""
    return source.get("pretrained", True) is False and not source.get("pretrain")


def input_identity(source: dict[str, Any]) -> dict[str, Any]:
    """What of a source block decides the backbone's inputs and features: all of it but the new
    head's initialisation (a feature cache or a loaded target is shared across head inits)."""
    return {k: v for k, v in source.items() if k != "head_init"}


class Source:
    """A namespace of models. Subclasses set ``Params`` and implement ``build``."""

    Params: ClassVar[type[SourceParams]] = SourceParams
    names: ClassVar[tuple[str, ...] | None] = None  # closed namespaces list their names

    def modality(self, name: str) -> str:  # "image" | "text"
        raise NotImplementedError

    def check_name(self, name: str) -> None:
        """Raise ``ValueError`` (with a did-you-mean) when ``name`` cannot be built."""
        if self.names is not None and name not in self.names:
            close = did_you_mean(name, self.names)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown model '{name}'.{hint} Available: {', '.join(self.names)}.")

    def depth(self, name: str, params: dict[str, Any]) -> int | None:
        """Number of backbone blocks, when known without building (for validate-time checks)."""
        return None

    def build(self, name: str, params: dict[str, Any], pretrained: bool) -> Any:
        """A :class:`~harness.sources.nets.Backbone` (imported by the implementation: this module names
        things without torch)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ImageInput:
    """Preprocessing an image backbone expects (from its weights' metadata)."""

    size: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    channels: int = 3


@dataclass(frozen=True)
class TextInput:
    """Tokenisation a text backbone expects."""

    tokenizer: Any = field(repr=False)
    max_length: int = 128
