"""The shapes a suite file resolves into. Frozen: a spec is never mutated during a run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Pair ids, suite names and strategy labels become file names: no separators, no "..".
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class Params(BaseModel):
    """Base for every parameter block (train config, source/target/strategy params):
    frozen, unknown keys rejected, lax parsing so YAML's ``1e-3`` (a string) is a float, and every
    float finite (YAML's ``.inf`` and ``.nan`` are refused wherever a number is expected)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TrainConfig(Params):
    """The training budget and optimisation settings every strategy shares."""

    epochs: int = Field(3, ge=1, description="passes over the training split")
    batch_size: int = Field(32, ge=1, description="examples per optimizer micro-batch")
    eval_batch_size: int | None = Field(None, ge=1, description="examples per eval batch (default: 2 × batch_size)")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="decoupled weight decay (not applied to biases and norms)")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    scheduler: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="fraction of steps with linear warm-up")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping (null: off)")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast dtype on CUDA; CPU runs fp32")
    eval_every: int = Field(1, ge=1, description="validate every N epochs")
    patience: int | None = Field(None, ge=1, description="early-stop after N evals without improvement")
    max_steps: int | None = Field(None, ge=1, description="cap on optimizer steps")
    max_train_samples: int | None = Field(None, ge=1, description="subsample the training split")
    max_eval_samples: int | None = Field(None, ge=1, description="subsample val and test")
    num_workers: int = Field(0, ge=0, description="DataLoader workers where a loader is used")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    timeout_s: float | None = Field(None, gt=0, description="wall-clock limit for the run")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms + cuDNN flags")
    on_oom: Literal["fail", "shrink"] = Field(
        "fail", description="on CUDA out-of-memory: fail the run, or halve batch_size, double grad_accum and retry")
    channels_last: bool = Field(False, description="NHWC memory format for 4-d image inputs and the model (fast convs on GPU)")
    compile: bool = Field(False, description="torch.compile the model for training steps (first steps pay the compile)")
    group_by_length: bool = Field(
        False, description="token tasks: train on batches of like lengths (sorted within mega-batches of 50, as the "
        "Trainer's group_by_length): less padding, faster, but measured 1.5-2 F1 points lower on WNUT-16")
    norm_stats: Literal["frozen", "adapt"] = Field(
        "frozen", description="BatchNorm running statistics of modules whose weights do not train: frozen (the "
        "source's, as in inference) or adapt (updated on the training batches, frozen or not; for a domain-adaptation "
        "pair those are the source domain's: AdaBN on unlabeled target data is the adabn strategy)")
    gpu_share: float = Field(
        1.0, gt=0, le=1, description="the fraction of one GPU a run needs on a Ray cluster: runs of 0.25 share a "
        "GPU four at a time (placement: not part of the run_id)")
    frozen_dropout: bool = Field(
        False, description="keep dropout active inside modules none of whose weights train (off: a frozen module "
        "computes exactly what it computed before training, as the probe's cached features)")


TRAIN_KEYS = frozenset(TrainConfig.model_fields)
# Where and under which guards a run executes, not what it computes: left out of its run_id and
# compute_key, so moving a suite to another device or executor reuses every ok record (the record
# still says where it ran, under ``config.placement`` and ``env``).
PLACEMENT_KEYS = ("device", "num_workers", "timeout_s", "on_oom", "gpu_share")


SEARCH_OPTIONS = frozenset({"method", "trials", "selection_seeds", "extend_edges", "select_by"})
SPLIT_KEY = "split"  # unlabeled: {dataset: …, split: …}: which split of the other target (default train)


@dataclass(frozen=True)
class SearchLayer:
    """One ``search:`` block as written at one level (defaults, pair.train, a strategy block, an
    override): candidate values per key, and the search's options set at that level."""

    space: dict[str, Any] = field(default_factory=dict)  # key → list of values, or a distribution mapping
    options: dict[str, Any] = field(default_factory=dict)  # method, trials, selection_seeds

    def __bool__(self) -> bool:
        return bool(self.space or self.options)


@dataclass(frozen=True)
class ComponentSpec:
    """A source or a target: a registry name (``namespace/name``) and its params."""

    ref: str
    params: dict[str, Any] = field(default_factory=dict)
    task: str | None = None  # targets only

    @property
    def namespace(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.ref.split("/", 1)[1] if "/" in self.ref else ""

    def as_dict(self, key: str) -> dict[str, Any]:
        d: dict[str, Any] = {key: self.ref}
        if self.task is not None:
            d["task"] = self.task
        d.update(self.params)
        return d


@dataclass(frozen=True)
class StrategySpec:
    """One entry of ``strategies:`` — a registered strategy, its label, its params and the
    training keys it overrides."""

    name: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    search: SearchLayer = field(default_factory=SearchLayer)


@dataclass(frozen=True)
class PairSpec:
    id: str
    source: ComponentSpec
    target: ComponentSpec
    train: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, StrategySpec] = field(default_factory=dict)  # by strategy label
    search: SearchLayer = field(default_factory=SearchLayer)  # written inside the pair's `train:`
    strategies: tuple[str, ...] | None = None  # labels this pair runs (None: every strategy of the suite)


@dataclass(frozen=True)
class SuiteSpec:
    suite: str
    path: str
    seeds: tuple[int, ...]
    defaults: dict[str, Any]
    pairs: tuple[PairSpec, ...]
    strategies: tuple[StrategySpec, ...]
    description: str = ""
    price_per_gpu_hour: float | None = None
    search: SearchLayer = field(default_factory=SearchLayer)  # written inside `defaults:`
    warnings: tuple[Any, ...] = ()  # harness.errors.Issue: legal, probably unintended (validate prints them)
    overrides: tuple[str, ...] = ()  # the `--set KEY.PATH=VALUE` texts applied to the file's data, in order
    # every trained cell also runs its first seed at twice the budget (plan.py: budget checks); off by
    # default, so a suite's plan is what it was
    budget_check: bool = False


def layered_settings(defaults: Mapping[str, Any], pair: PairSpec | None = None, strategy: StrategySpec | None = None,
                     override: StrategySpec | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one rule for a run's settings: ``defaults < pair.train < strategy block <
    pair.overrides[label]``, merged key by key (a later layer's ``False``, ``0`` or ``None`` is a
    value that replaces the one below, never skipped as falsy). Returns the training keys and the
    strategy params as written, unvalidated; a layer left out (a pretrain has no pair, a teacher no
    override) adds nothing."""
    train = {**defaults, **(pair.train if pair else {}), **(strategy.train if strategy else {}),
             **(override.train if override else {})}
    params = {**(strategy.params if strategy else {}), **(override.params if override else {})}
    return train, params
