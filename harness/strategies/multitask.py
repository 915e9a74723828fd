"""``multitask``: one shared encoder, one head per task, weighted losses, a sampler across tasks
(hard parameter sharing; Caruana, 1997, "Multitask Learning", Machine Learning 28).

The pair's target is the main task (weight 1, the loop's own loss; it alone is evaluated).
Auxiliary tasks are declared in the params, each a target block like a pair's plus a weight::

    multitask:
      tasks:
        - {target: {dataset: sklearn/digits, labels: parity, image_size: 64}, weight: 0.5}

Each auxiliary task gets its own linear head on the shared backbone and trains on its own
training split (subsampled like the main one by ``max_train_samples``). Every step adds
Σ weight_i · CE_i over one batch of each auxiliary task (``sampler: all``), or of one task
drawn with probability ∝ its training-set size (``sampler: proportional``). A task with
weight 0 is never sampled, so its head stays as initialised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from harness.config.schema import Params
from harness.registry import STRATEGIES, TARGETS, TASKS
from harness.strategies.base import Strategy, decay_groups
from harness.tasks import task_loss

if TYPE_CHECKING:
    import torch

SPLIT_KEYS = ("val_fraction", "test_fraction", "split_seed")


class AuxTask(Params):
    target: dict[str, Any] = Field(..., description="a target block like a pair's: {dataset: ns/name, task: …, params}")
    weight: float = Field(1.0, ge=0, description="weight of this task's loss (the main task has weight 1)")


class MultitaskParams(Params):
    tasks: list[AuxTask] = Field(..., min_length=1, description="the auxiliary tasks")
    sampler: Literal["all", "proportional"] = Field(
        "all", description="all: one batch of every auxiliary task per step; proportional: one task per step, ∝ its size")


@STRATEGIES.register("multitask", description="shared encoder, one head per task, weighted losses, a sampler across tasks")
class Multitask(Strategy):
    """The main task plus weighted auxiliary tasks on one shared backbone."""

    Params = MultitaskParams

    def __init__(self, params, train):
        from torch import nn

        super().__init__(params, train)
        self.heads = nn.ModuleList()
        self.streams: list = []
        self.sizes: list[int] = []
        self.last: dict[int, torch.Tensor] = {}

    @classmethod
    def check(cls, params, pair, suite):
        from harness.config.components import parse_component
        from harness.registry import SOURCES

        issues: list[str] = []
        modality = SOURCES.get(pair.source.namespace).modality(pair.source.name)
        for i, t in enumerate(params.tasks):
            spec, found = parse_component(t.target, ("tasks", i, "target"), "target")
            issues += found
            if spec is None or spec.task is None:
                continue
            if TASKS.get(spec.task).modality != modality:
                issues.append(f"tasks[{i}].target.task: task '{spec.task}' needs a {TASKS.get(spec.task).modality} "
                              f"model; the pair's source is a {modality} model")
            if spec.ref == pair.target.ref:
                split_fields = TARGETS.get(spec.namespace).Params.model_fields
                mine = {k: spec.params.get(k, split_fields[k].default) for k in SPLIT_KEYS if k in split_fields}
                main = {k: pair.target.params.get(k, split_fields[k].default) for k in SPLIT_KEYS if k in split_fields}
                if mine != main:
                    issues.append(f"tasks[{i}].target: same dataset as the pair's target but another split {mine} ≠ "
                                  f"{main}: its training split would hold the pair's test examples")
        return issues

    def adapt(self, model, data, ctx):
        import torch
        from torch import nn

        backbone = model.backbone
        self.heads, self.streams, self.sizes, info = nn.ModuleList(), [], [], []
        for i, t in enumerate(self.params.tasks):
            task = t.target.get("task") or TARGETS.get(t.target["dataset"].split("/", 1)[0]).default_task
            aux = ctx.load_target(t.target, backbone, task)
            train = ctx.subsample(aux.splits["train"], self.train.max_train_samples)
            self.heads.append(backbone.new_head(len(aux.label_names), getattr(model, "head_init", "auto")))
            self.streams.append(ctx.stream(train, self.train.batch_size, 104_729 * (i + 1)))
            self.sizes.append(len(train))
            info.append({"dataset": t.target["dataset"], "task": task, "weight": t.weight, "labels": len(aux.label_names),
                         "train": len(train)})
        self.heads.to(ctx.device)
        self.pick = torch.Generator().manual_seed(ctx.seed + 15_485_863)
        ctx.notes["aux_tasks"] = info
        return model, data

    def param_groups(self, model):
        named = [(f"aux_heads.{n}", p) for n, p in self.heads.named_parameters()]
        return super().param_groups(model) + decay_groups(named, self.train.lr, self.train.weight_decay)

    def sampled(self) -> list[int]:
        """Auxiliary tasks that contribute this step (tasks with weight 0 never do)."""
        import torch

        live = [i for i, t in enumerate(self.params.tasks) if t.weight > 0]
        if self.params.sampler == "all" or len(live) <= 1:
            return live
        sizes = torch.tensor([float(self.sizes[i]) for i in live])
        return [live[int(torch.multinomial(sizes, 1, generator=self.pick))]]

    def extra_loss(self, model, batch, out):
        total = None
        for i in self.sampled():
            aux = next(self.streams[i])  # on the run's device
            features = model(aux)["features"]  # the shared encoder, pooled as the model pools
            loss = task_loss(self.heads[i](model.dropout(features)), aux["labels"])
            self.last[i] = loss.detach()
            term = self.params.tasks[i].weight * loss
            total = term if total is None else total + term
        return total

    def report(self, model):
        return {"aux_head_params": sum(p.numel() for p in self.heads.parameters()),
                "aux_loss_last": {str(i): round(float(v), 6) for i, v in self.last.items()}}
