"""The strategy protocol: what a strategy may decide, and nothing else.

A strategy uses only what its :class:`~harness.run.context.RunContext` gives it (features, memoised
computations, data streams, …): it never imports the runner, the planner or the config loader.

A strategy decides what trains (``prepare``), how the optimizer groups parameters
(``param_groups``), any extra loss term (``extra_loss``), what changes at epoch boundaries
(``on_epoch_start``) and, optionally, what the loop trains on (``adapt``: e.g. a head over
cached features). The training loop calls these hooks and never branches on a strategy name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.config.schema import Params, TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.config.schema import PairSpec, StrategySpec, SuiteSpec
    from harness.run.context import RunContext
    from harness.targets.base import TargetData


AnyParams = Params  # the class attribute Strategy.Params shadows the name in method signatures


class NoParams(Params):
    """This strategy takes no parameters of its own."""


@dataclass(frozen=True)
class Input:
    """Another run a strategy reads the output of (at the same seed): a strategy label of the suite
    (``label``), or a run no cell of the suite makes (``strategy`` on ``source``), which the plan
    adds as an aux cell. The plan makes the dependency an edge of the graph and hashes the input's
    run_id into the reader's."""

    label: str | None = None
    strategy: StrategySpec | None = None
    source: dict[str, Any] | None = None


def is_no_decay(name: str, p: nn.Parameter) -> bool:
    """Biases and normalisation weights (1-d tensors) get no weight decay."""
    return p.ndim <= 1 or name.endswith(".bias")


def decay_groups(named: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float, **extra) -> list[dict]:
    decay = [p for n, p in named if not is_no_decay(n, p)]
    no_decay = [p for n, p in named if is_no_decay(n, p)]
    groups = []
    if decay:
        groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay, **extra})
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, **extra})
    return groups


class Strategy:
    """Base strategy: pretrained weights, everything trains, one lr, no extra loss."""

    Params: ClassVar[type[Params]] = NoParams
    pretrained: ClassVar[bool] = True  # load the source's pretrained weights
    uses_unlabeled: ClassVar[bool] = False  # trains on the target's unlabeled data of another domain (dann)
    uses_target_labels: ClassVar[bool] = False  # trains on a few labelled target-domain examples (target_shots)
    # the runner measures the pair's domain gap (when it has unlabeled data) into this strategy's
    # records: the frozen-feature probes', where the domain report has always read it
    records_domain_gap: ClassVar[bool] = False

    def __init__(self, params: AnyParams, train: TrainConfig):
        self.params = params
        self.train = train

    @classmethod
    def check(cls, params: AnyParams, pair: PairSpec, suite: SuiteSpec) -> list[str]:
        """Problems visible before training (e.g. a depth the model does not have)."""
        return []

    @classmethod
    def warnings(cls, params: AnyParams, pair: PairSpec, suite: SuiteSpec, train: TrainConfig) -> list[str]:
        """Legal but probably unintended settings of a cell (``harness validate`` prints them and
        still says ok)."""
        return []

    @classmethod
    def unused_keys(cls, params: AnyParams) -> frozenset[str]:
        """Training keys that change nothing for this strategy with these params (a closed-form
        probe has no learning rate): a search over them is dropped, the report shows no budget."""
        return frozenset()

    @classmethod
    def inputs(cls, params: AnyParams, pair: PairSpec, suite: SuiteSpec) -> dict[str, Input]:
        """Other runs whose outputs this strategy reads (``distill``: its teacher), by name. Each
        becomes an edge of the plan graph; their outputs arrive in ``RunContext.inputs``."""
        return {}

    def prepare(self, model: nn.Module) -> None:
        """Set ``requires_grad`` (and wrap modules) before the optimizer is built."""
        model.requires_grad_(True)

    def adapt(self, model: nn.Module, data: TargetData, ctx: RunContext) -> tuple[nn.Module, TargetData]:
        """What the loop trains and on which data; by default, unchanged."""
        return model, data

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Optimizer parameter groups; every param that may ever train must be listed."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        return decay_groups(named, self.train.lr, self.train.weight_decay)

    def extra_loss(self, model: nn.Module, batch: dict, out: dict) -> torch.Tensor | None:
        """A term added to the task loss (regularisers, distillation, domain loss)."""
        return None

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called before each epoch (0-based): schedules such as gradual unfreezing."""

    def trains_in_loop(self) -> bool:
        """False when ``adapt`` already fitted the model (e.g. an L-BFGS solver): the loop then
        skips its optimizer steps and only evaluates."""
        return True

    def closed_form(self) -> dict[str, Any] | None:
        """How a strategy that fits outside the loop (``trains_in_loop() == False``) fitted, for
        the record's budget and the report's budget table: ``{"solver": …}`` plus the
        hyper-parameters it chose (the probe's ``C``). None for a model the loop trains."""
        return None

    def validators(self) -> dict[str, Any] | None:
        """The label-free validators' scores of a model the strategy fitted itself (the probe's
        chosen C, measured per C of its grid), for the record's ``metrics.validators``; None: the
        runner measures a trained model's (``run/selection.py``), or nothing."""
        return None

    def held_out_val(self) -> dict[str, Any] | None:
        """Validation metrics the strategy measured itself, when the model the loop would validate
        has since trained on the validation split (a probe refitted on train + val)."""
        return None

    def evaluating(self, model: nn.Module) -> contextlib.AbstractContextManager:
        """Entered around every evaluation on the evaluated domain (val, test, the target side of the
        label-free validators): what the model is while it is scored there (AdaBN: BatchNorm
        statistics of the target domain), undone on exit so training goes on unchanged."""
        return contextlib.nullcontext()

    def bn_statistics(self) -> str:
        """Which data the BatchNorm running statistics the model is scored with come from (the
        record's ``data.bn_statistics``; docs/strategies.md, *BatchNorm statistics*): ``labelled``,
        the labelled training batches in train mode (for a source-only row, the source domain)."""
        return "labelled"

    @classmethod
    def control(cls, params: AnyParams) -> str | None:
        """What this cell controls for, when it is a control row of domain adaptation (a DA
        method's pipeline without its alignment loss); None for a method."""
        return None

    def report(self, model: nn.Module) -> dict[str, Any]:
        """Strategy facts for the record."""
        return {}


def freeze_all_but_head(model: nn.Module) -> None:
    """Freeze every weight, then let the task head train (the start of every selective strategy)."""
    model.requires_grad_(False)
    model.head.requires_grad_(True)


def source_depth(pair: PairSpec) -> int | None:
    """How many blocks the pair's source model has, when its source knows without building it."""
    from harness.registry import SOURCES

    return SOURCES.get(pair.source.namespace).depth(pair.source.name, pair.source.params)


def blocks_beyond_depth(pair: PairSpec, key: str, blocks: int) -> list[str]:
    """A validate-time problem when ``blocks`` (the value of ``key``) exceeds the source's depth."""
    depth = source_depth(pair)
    if depth is not None and blocks > depth:
        return [f"{key}={blocks} but {pair.source.ref} has only {depth} blocks"]
    return []


def backbone_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's backbone blocks, input to output; an error when it has none to count in."""
    blocks = model.blocks()  # type: ignore[operator]  # TransferModel.blocks(); nn.Module types attributes as Tensor | Module
    if not blocks:
        raise TypeError(f"{type(model).__name__} exposes no backbone blocks (blocks() is empty)")
    return blocks
