"""One generic train/eval loop for every strategy, model and task.

Strategies act only through their hooks (``param_groups``, ``extra_loss``,
``on_epoch_start``); the loop knows nothing of their names. Loss is cross-entropy over
labels with ignore index -100 (token tasks ignore non-first sub-words and padding).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from harness.config.schema import TrainConfig
from harness.errors import Diverged, RunTimeout
from harness.metrics import Predictions, compute
from harness.run.cost import step_flops
from harness.run.seed import data_generator
from harness.targets.base import Split, TargetData
from harness.tasks import Task, task_loss


@dataclass
class FitResult:
    test: dict[str, Any]
    val: dict[str, Any]
    curve: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    train_samples: int = 0
    best_epoch: int | None = None
    stopped_early: bool = False
    flops_per_step: int | None = None
    precision: str = "fp32"
    norm_stats: dict[str, Any] = field(default_factory=dict)  # the policy and how many BatchNorms it froze
    max_trainable: int | None = None  # when the trainable set changes during training (gradual unfreezing)
    final_trainable: int | None = None
    # the predictions behind ``val`` and ``test`` (val: absent when a strategy held out its own)
    predictions: dict[str, Predictions] = field(default_factory=dict)


def train_mode(model: nn.Module, norm_stats: str = "frozen", frozen_dropout: bool = False) -> int:
    """Put ``model`` in training mode under the frozen-module policy; return how many BatchNorm
    layers keep their running statistics. The one place this policy lives.

    * A module that has parameters, none of which train (a frozen block, a frozen FFN beside
      LoRA's attention), runs as in inference unless ``frozen_dropout``: no dropout, so it computes
      exactly what it computed before training — the features a linear probe caches.
    * ``norm_stats: frozen`` (the default): a BatchNorm layer whose own weights do not all train
      (or, without affine weights, whose parent's do not) keeps the source's running mean and
      variance. ``adapt``: every BatchNorm, frozen or not, updates them on the training batches (the
      target *task*'s data; for a domain-adaptation pair the labelled source domain's — AdaBN on
      the unlabeled target domain is the ``adabn`` strategy's ``evaluating``).
    """
    model.train()
    if not frozen_dropout:
        _freeze_subtrees(model)
    parents = {id(child): module for module in model.modules() for child in module.children()}
    frozen = 0
    for module in model.modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        if norm_stats == "adapt":
            module.train()
            continue
        own = list(module.parameters(recurse=False)) or list(parents.get(id(module), module).parameters())
        if not own or not all(p.requires_grad for p in own):
            module.eval()
            frozen += 1
    return frozen


def _freeze_subtrees(module: nn.Module) -> None:
    """``eval()`` the largest subtrees that hold parameters and train none of them."""
    for child in module.children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            child.eval()
        else:
            _freeze_subtrees(child)


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def autocast(device: torch.device, precision: str):
    """bf16/fp16 autocast on CUDA; CPU runs fp32 (CPU autocast is slower than fp32 on most CPUs)."""
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


def effective_precision(device: torch.device, precision: str) -> str:
    return precision if device.type == "cuda" else "fp32"


def to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool = False) -> dict[str, torch.Tensor]:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if channels_last:  # image batches (B, C, H, W) in NHWC, like the model's conv weights
        out = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 and v.is_floating_point() else v
               for k, v in out.items()}
    return out


def place(data: TargetData, device: torch.device, num_workers: int = 0) -> TargetData:
    """Splits that can compute on the device (decoded images kept resident and augmented
    there, or a DataLoader with ``num_workers``) move there once; others are unchanged."""
    moved = {k: s.to_device(device, num_workers) if hasattr(s, "to_device") else s for k, s in data.splits.items()}
    if all(moved[k] is data.splits[k] for k in moved):
        return data
    return replace(data, splits=moved)  # keys, origins and the rest travel with the splits


@contextlib.contextmanager
def inference(model: nn.Module):
    """``model`` in eval mode inside; on exit every module's own training flag back, module by
    module (a frozen BatchNorm inside a training model stays frozen)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.train(mode)


@torch.inference_mode()
def predict(model, split: Split, label_names, device, batch_size: int, precision: str) -> tuple[Predictions, float]:
    """Predictions on a split and the mean loss over its labelled positions."""
    with inference(model):
        return _predict(model, split, label_names, device, batch_size, precision)


def _predict(model, split: Split, label_names, device, batch_size: int, precision: str) -> tuple[Predictions, float]:
    y_true, y_pred, seq, losses, count = [], [], [], 0.0, 0
    for batch in split.batches(batch_size):
        batch = to_device(batch, device)
        with autocast(device, precision):
            logits = model(batch)["logits"]
        labels = batch["labels"]
        mask = labels != -100
        n = int(mask.sum())
        if n:
            losses += float(task_loss(logits, labels)) * n
            count += n
        y_true.append(labels[mask].cpu())
        y_pred.append(logits.argmax(-1)[mask].cpu())
        if "index" in batch:
            idx = batch["index"]
            if labels.ndim == 2:
                idx = idx.unsqueeze(1).expand_as(labels)
            seq.append(idx[mask].cpu())
    preds = Predictions(
        y_true=torch.cat(y_true).numpy(), y_pred=torch.cat(y_pred).numpy(), label_names=list(label_names),
        seq_index=torch.cat(seq).numpy() if seq else None, sequences=split.sequences,
    )
    return preds, losses / max(count, 1)


def evaluate(model, split, task: Task, label_names, device, batch_size, precision) -> dict[str, Any]:
    return scored(model, split, task, label_names, device, batch_size, precision)[0]


def scored(model, split, task: Task, label_names, device, batch_size, precision) -> tuple[dict[str, Any], Predictions]:
    """:func:`evaluate`'s metrics and the predictions they were computed from (kept beside the record)."""
    preds, loss = predict(model, split, label_names, device, batch_size, precision)
    if task.per_token and preds.seq_index is None:
        preds = Predictions(preds.y_true, preds.y_pred, preds.label_names, np.zeros(0, int), [])
    out = compute(task.metrics, preds)
    out["loss"] = loss
    out["n"] = len(split)
    # how many labels the predictions use against the gold: 1 of many is a collapsed model (every
    # word O, every image one class) that a score alone does not reveal
    out["predicted_classes"] = int(np.unique(preds.y_pred).size)
    out["gold_classes"] = int(np.unique(preds.y_true).size)
    return out, preds


def lr_lambda(cfg: TrainConfig, total_steps: int):
    warmup = int(cfg.warmup_ratio * total_steps)

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        progress = min(max(progress, 0.0), 1.0)
        return 1.0 - progress if cfg.scheduler == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    return f


def build_optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if not groups:
        raise ValueError("the strategy left no parameter to train")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused_ok(groups))


def fused_ok(groups: list[dict]) -> bool:
    """Whether ``AdamW(fused=True)`` takes these parameters: floating point, all on one device of a
    kind it supports. One kernel instead of ~10 per tensor list: on CPU (one thread, 22M params)
    16-22 ms per step against 85-155 ms for the default ``foreach`` (benchmarks/bench_text_step.py);
    the Trainer's default too."""
    params = [p for g in groups for p in g["params"]]
    kinds = {p.device.type for p in params}
    return (len(kinds) == 1 and kinds <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params))


HOST_SYNC_EVERY = 32  # micro-steps between reads of the loss on the host, on a GPU


def host_sync_every(device: torch.device) -> int:
    """Micro-steps between reads of the training loss on the host. Each read (the divergence check,
    the running loss) waits for the device to finish: on a GPU, one per step stops the CPU from
    queueing the next step's kernels while the GPU runs this one's; on the CPU it costs nothing."""
    return HOST_SYNC_EVERY if device.type == "cuda" else 1


class LossTally:
    """An epoch's running training loss and the divergence check, fed one micro-step at a time and
    read on the host every ``every`` micro-steps and at :meth:`flush`. The sum is taken on the host
    in step order, so it is the same number whatever ``every`` is; a non-finite loss raises
    :class:`Diverged` naming its own step, at most ``every`` - 1 micro-steps later (before the
    backward pass when ``every`` is 1)."""

    def __init__(self, every: int = 1):
        self.every, self.total, self.seen = every, 0.0, 0
        self._pending: list[tuple[torch.Tensor, int, int]] = []

    def add(self, loss: torch.Tensor, n: int, step: int) -> None:
        self._pending.append((loss.detach(), n, step))
        if len(self._pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        values = [float(pending[0][0])] if len(pending) == 1 else \
            torch.stack([x.double().reshape(()) for x, _, _ in pending]).tolist()  # one wait for them all
        for value, (_, n, step) in zip(values, pending, strict=True):
            if not math.isfinite(value):
                raise Diverged(f"loss is {value} at step {step}")
            self.total += value * n
            self.seen += n

    @property
    def mean(self) -> float:
        return self.total / max(self.seen, 1)

    def mark(self) -> tuple[float, int, int]:
        return self.total, self.seen, len(self._pending)

    def undo(self, mark: tuple[float, int, int]) -> None:
        """Forget what was added since ``mark`` (a step that failed half-way and is taken again)."""
        self.total, self.seen = mark[0], mark[1]
        del self._pending[mark[2]:]


def micro_batches(examples: int, batch_size: int) -> int:
    """Micro-batches in one epoch over ``examples`` training examples (at least one)."""
    return max(1, math.ceil(examples / batch_size))


def planned_micro_steps(cfg: TrainConfig, examples: int) -> int:
    """The forward passes :func:`fit` makes at most on ``examples`` training examples (each calls
    ``extra_loss`` once): what a strategy that schedules by training progress counts in."""
    micro = cfg.epochs * micro_batches(examples, cfg.batch_size)
    return max(1, min(micro, cfg.max_steps * cfg.grad_accum) if cfg.max_steps else micro)


def fit(model, data: TargetData, task: Task, strategy, cfg: TrainConfig, device: torch.device, seed: int,
        meter=None, show_progress: bool = False, deadline: float | None = None, desc: str = "train") -> FitResult:
    """Train ``model`` on ``data['train']``, validate, test; return metrics and the curve."""
    precision = effective_precision(device, cfg.precision)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    frozen_norms = train_mode(model, cfg.norm_stats, cfg.frozen_dropout)
    data = place(data, device, cfg.num_workers)
    train, val, test = data.splits["train"], data.splits["val"], data.splits["test"]
    # Strategy hooks see the model itself; only the training forward goes through the compiled graph.
    forward = torch.compile(model) if cfg.compile else model
    eval_bs = cfg.eval_batch_size or 2 * cfg.batch_size
    optimizer = build_optimizer(strategy.param_groups(model), cfg)
    micro_per_epoch = micro_batches(len(train), cfg.batch_size)
    steps_per_epoch = max(1, micro_per_epoch // cfg.grad_accum)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.precision == "fp16")
    gen = data_generator(seed)
    phase = meter.phase if meter else (lambda name: contextlib.nullcontext())

    result = FitResult(test={}, val={}, precision=precision,
                       norm_stats={"policy": cfg.norm_stats, "frozen_batchnorms": frozen_norms,
                                   "frozen_dropout": cfg.frozen_dropout})
    trainable_seen = [trainable_count(model)]
    best_score, best_state, bad_evals = -math.inf, None, 0
    params = [p for g in optimizer.param_groups for p in g["params"]]
    step = 0
    bar = tqdm(total=total_steps, desc=desc, leave=False, position=1, disable=not show_progress, dynamic_ncols=True)

    sync_every = host_sync_every(device)

    def micro_step(batch, net=forward):
        with autocast(device, precision):
            out = net(batch)
            loss = task_loss(out["logits"], batch["labels"])
            extra = strategy.extra_loss(model, batch, out)
            if extra is not None:
                loss = loss + extra
        tally.add(loss, len(batch["labels"]), step)  # checks it is finite (now, or a few steps on)
        scaler.scale(loss / cfg.grad_accum).backward()
        return loss

    epoch = 0
    # A strategy that fitted its model in ``adapt`` (closed-form or L-BFGS head) takes no steps here.
    for epoch in range(cfg.epochs if strategy.trains_in_loop() else 0):
        strategy.on_epoch_start(model, epoch)
        # the strategy may have changed what trains (gradual unfreezing): the BatchNorm policy follows
        result.norm_stats["frozen_batchnorms"] = train_mode(model, cfg.norm_stats, cfg.frozen_dropout)
        trainable_seen.append(trainable_count(model))
        tally, micro = LossTally(sync_every), 0
        with phase("train"):
            for batch in train.batches(cfg.batch_size, shuffle=True, generator=gen, group_by_length=cfg.group_by_length):
                if deadline is not None and time.monotonic() > deadline:
                    tally.flush()  # a loss gone non-finite before the deadline is a divergence, not a timeout
                    raise RunTimeout(f"timeout_s={cfg.timeout_s} exceeded at step {step}")
                batch = to_device(batch, device, cfg.channels_last)
                if result.flops_per_step is None and step == 0 and micro == 0:
                    holder = {}  # counted eagerly: the flop counter cannot see inside a compiled graph
                    mark = tally.mark()
                    result.flops_per_step = step_flops(lambda b=batch, h=holder: h.setdefault("loss", micro_step(b, model)))
                    if "loss" not in holder:  # the counter failed before the step finished: take it again
                        tally.undo(mark)  # its loss, if it got that far, is counted once
                        micro_step(batch)
                else:
                    micro_step(batch)
                micro += 1
                result.train_samples += len(batch["labels"])
                if micro % cfg.grad_accum:
                    continue
                if cfg.max_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{tally.mean:.4f}")  # as of the last read
                if step >= total_steps:
                    break
            tally.flush()
        last = step >= total_steps or epoch == cfg.epochs - 1
        if (epoch + 1) % cfg.eval_every == 0 or last:
            with phase("eval"), strategy.evaluating(model):
                val_metrics, val_preds = scored(model, val, task, data.label_names, device, eval_bs, precision)
            score = val_metrics.get(task.primary, float("nan"))
            result.curve.append({"epoch": epoch + 1, "step": step, "train_loss": tally.mean,
                                 "val_loss": val_metrics["loss"], f"val_{task.primary}": score})
            if cfg.patience is not None:
                if score > best_score:
                    best_score, bad_evals, result.best_epoch = score, 0, epoch + 1
                    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                    result.val, result.predictions["val"] = val_metrics, val_preds
                else:
                    bad_evals += 1
                    if bad_evals >= cfg.patience:
                        result.stopped_early = True
                        break
            else:
                result.val, result.predictions["val"] = val_metrics, val_preds
        if step >= total_steps:
            break
    bar.close()
    if len(set(trainable_seen)) > 1:
        result.max_trainable, result.final_trainable = max(trainable_seen), trainable_seen[-1]
    if not result.val:  # no epoch ran (the strategy fitted its model itself)
        result.val = strategy.held_out_val() or {}
        if not result.val:
            with phase("eval"), strategy.evaluating(model):
                result.val, result.predictions["val"] = scored(model, val, task, data.label_names, device, eval_bs,
                                                               precision)
    if best_state is not None:
        model.load_state_dict(best_state)
    result.steps = step
    with phase("eval"), strategy.evaluating(model):
        result.test, result.predictions["test"] = scored(model, test, task, data.label_names, device, eval_bs, precision)
    return result
