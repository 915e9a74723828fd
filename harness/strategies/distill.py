"""``distill``: knowledge distillation — a student learns from a teacher's softened predictions.

loss = (1 − mix)·CE(student, y) + mix·T²·KL(softmax(teacher/T) ‖ softmax(student/T))
(Hinton, Vinyals & Dean, 2015), each term averaged over labelled positions (examples, or
first sub-words for token tasks).

The teacher is either

* another strategy of the suite, by label (``teacher: full_finetune``): the run that label makes
  on the same pair with the same seed. Its resolved config is copied into this strategy's params
  at plan time (``teacher_run``), so the run_id changes whenever the teacher's config does; or
* a source model whose head is fine-tuned on the target (``teacher: {model: ns/name, …}``):
  trained by ``teacher_strategy`` (default ``linear_probe``) with ``defaults < pair.train <
  teacher_train``.

The student is the pair's source. The teacher is retrained deterministically inside the first
distill run that needs it (same RunSpec and run_id as the teacher's own run), then its logits on
the student's training split are cached under ``<cache>/distill/<key>.pt`` (atomic, SHA-256
checked) keyed by the teacher's run_id and the split — so the soft targets are computed once,
whatever the executor's order, and later runs (reruns, other students) reuse them.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from harness.config.errors import did_you_mean
from harness.config.schema import Params, StrategySpec
from harness.registry import STRATEGIES
from harness.strategies.base import RunContext, Strategy
from harness.targets.base import Split, TargetData, TensorSplit, TokenSplit

CACHE_VERSION = 1


class DistillParams(Params):
    teacher: str | dict[str, Any] = Field(
        ..., description="a strategy label of this suite, or a source spec {model: ns/name, …} whose head is fine-tuned")
    temperature: float = Field(2.0, gt=0, description="softmax temperature T of both teacher and student")
    mix: float = Field(0.5, ge=0, le=1, description="weight of the distillation term; 1 − mix weighs the label CE")
    teacher_strategy: str = Field("linear_probe", description="how a source-spec teacher is fitted to the target")
    teacher_train: dict[str, Any] = Field(default_factory=dict,
                                          description="training keys for a source-spec teacher (over defaults and pair.train)")
    teacher_run: dict[str, Any] | None = Field(None, description="filled by the planner: the teacher's resolved run")


def kd_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the positions in ``mask``."""
    classes = student.shape[-1]
    s, t = student.float().reshape(-1, classes), teacher.float().reshape(-1, classes)
    if mask is not None:
        keep = mask.reshape(-1).bool()
        s, t = s[keep], t[keep]
    if not len(s):
        return student.sum() * 0.0
    log_p_t = F.log_softmax(t / temperature, dim=-1)
    log_p_s = F.log_softmax(s / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    return temperature ** 2 * kl


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                 mix: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(1 − mix)·CE(student, labels) + mix·T²·KL(softmax(teacher/T) ‖ softmax(student/T))."""
    from harness.run.loop import task_loss

    return (1 - mix) * task_loss(student, labels) + mix * kd_term(student, teacher, temperature, mask)


class SoftTokenSplit(TokenSplit):
    """A token split whose batches carry the teacher's logits at the labelled positions."""

    def __init__(self, base: TokenSplit, soft: list[torch.Tensor]):
        super().__init__(base.input_ids, base.labels, base.sequences, base.pad_id, base.doc_labels)
        self.soft = soft

    def select(self, indices):
        return SoftTokenSplit(super().select(indices), [self.soft[int(i)] for i in indices])

    def collate(self, idx):
        batch = super().collate(idx)
        labels = batch["labels"]
        if labels.ndim == 1:  # one label per text
            batch["teacher_logits"] = torch.cat([self.soft[i] for i in idx])
            return batch
        teacher = torch.zeros((*labels.shape, self.soft[idx[0]].shape[-1]))
        mask = torch.zeros(labels.shape, dtype=torch.bool)
        for row, i in enumerate(idx):
            # the k-th labelled word gets the teacher's k-th word (tokenisers may truncate differently)
            pos = (labels[row] != -100).nonzero().squeeze(1)
            k = min(len(pos), len(self.soft[i]))
            teacher[row, pos[:k]] = self.soft[i][:k]
            mask[row, pos[:k]] = True
        batch["teacher_logits"], batch["teacher_mask"] = teacher, mask
        return batch


@torch.inference_mode()
def soft_targets(model, split: Split, device: torch.device, batch_size: int) -> list[torch.Tensor]:
    """The model's logits per example: ``(1, C)`` per image/text, ``(words, C)`` per sentence."""
    from harness.run.loop import to_device

    model.eval()
    out: list[torch.Tensor | None] = [None] * len(split)
    pos = 0
    for batch in split.batches(batch_size):
        batch = to_device(batch, device)
        logits = model(batch)["logits"].float().cpu()
        labels = batch["labels"].cpu()
        rows = batch["index"].tolist() if "index" in batch else list(range(pos, pos + len(logits)))
        pos += len(logits)
        for row, i in enumerate(rows):
            out[i] = logits[row][labels[row] != -100] if logits.ndim == 3 else logits[row:row + 1]
    return out


def with_soft_targets(split: Split, soft: list[torch.Tensor]) -> Split:
    if isinstance(split, TokenSplit):
        return SoftTokenSplit(split, soft)
    if isinstance(split, TensorSplit):
        return TensorSplit({**split.tensors, "teacher_logits": torch.cat(soft)}, split.sequences)
    raise TypeError(f"distill cannot attach teacher logits to a {type(split).__name__}")


def teacher_spec(run: dict[str, Any], seed: int):
    """The teacher's RunSpec for this seed: the very run_id the suite gives the teacher's own run."""
    from harness.plan import RunSpec, make_run_id, resolved_config

    cfg = resolved_config(run["pair"], run["source"], run["target"], run["strategy"], run["params"],
                          run["train"], seed, run["smoke"])
    return RunSpec(run_id=make_run_id(run["pair"], run["label"], seed, cfg), suite="", pair=run["pair"],
                   strategy=run["strategy"], label=run["label"], seed=seed, source=run["source"],
                   target=run["target"], train=run["train"], params=run["params"], smoke=run["smoke"])


def train_teacher(spec, ctx: RunContext):
    """Train the teacher exactly as its own run does; return it (on raw inputs) and its scores."""
    from harness.run.execute import build
    from harness.run.loop import fit
    from harness.run.seed import seed_everything

    cfg = spec.train_config
    seed_everything(spec.seed, cfg.deterministic)
    strategy, model, data, task = build(spec, ctx.device)
    tctx = RunContext(ctx.device, ctx.cache_dir, spec.source, spec.target, spec.seed)
    trained, tdata = strategy.adapt(model, data, tctx)
    result = fit(trained, tdata, task, strategy, cfg, ctx.device, spec.seed)
    # Strategies adapt ``model`` in place or share its modules (a probe's head), so ``model``
    # is the trained teacher on raw inputs.
    return model, {"val": result.val.get(task.primary), "test": result.test.get(task.primary),
                         "metric": task.primary}


def teacher_inputs(teacher, spec, max_train_samples: int | None) -> Split:
    """The student's training examples as a teacher with another source preprocesses them
    (the same subset: both draw ``max_train_samples`` with the executor's fixed seed)."""
    from harness.registry import TARGETS
    from harness.run.execute import SUBSAMPLE_SEED

    ns, name = spec.target["dataset"].split("/", 1)
    params = {k: v for k, v in spec.target.items() if k not in ("dataset", "task")}
    data = TARGETS.get(ns).load(name, params, spec.target["task"], teacher.backbone)
    return data.splits["train"].sample(max_train_samples, SUBSAMPLE_SEED)


def source_modality(pair) -> str:
    from harness.registry import SOURCES

    return SOURCES.get(pair.source.namespace).modality(pair.source.name)


def _cache_path(cache_dir, key: dict[str, Any]) -> Path | None:
    if not cache_dir:
        return None
    blob = json.dumps({**key, "version": CACHE_VERSION}, sort_keys=True, default=str)
    return Path(cache_dir) / "distill" / f"{hashlib.sha256(blob.encode()).hexdigest()[:20]}.pt"


def _save(path: Path, payload: dict[str, Any]) -> None:
    from harness.records import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())


def _load(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists() or not path.with_suffix(".sha256").exists():
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != path.with_suffix(".sha256").read_text().strip():
        return None  # torn or tampered: recompute
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


@STRATEGIES.register("distill", description="student learns from a teacher run's softened logits: (1−mix)·CE + mix·T²·KL")
class Distill(Strategy):
    """Knowledge distillation from a teacher (a suite label or a source with a fitted head)."""

    Params = DistillParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.teacher_info: dict[str, Any] = {}

    @classmethod
    def check(cls, params, pair, suite):
        from harness.config.load import Collector, _component

        issues = []
        if params.teacher_run is not None:
            issues.append("teacher_run is filled in by the planner; do not set it")
        if isinstance(params.teacher, str):
            labels = {s.label: s for s in suite.strategies}
            if params.teacher not in labels:
                close = did_you_mean(params.teacher, labels)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                issues.append(f"teacher '{params.teacher}' is not a strategy label of this suite.{hint} "
                              f"Labels: {', '.join(labels)}.")
            else:
                seen, label = [], params.teacher
                while label in labels and labels[label].name == "distill" and label not in seen:
                    seen.append(label)
                    label = labels[label].params.get("teacher")
                    if not isinstance(label, str):
                        break
                if label in seen:
                    issues.append(f"teacher chain loops: {' → '.join([*seen, label])}")
        else:
            col = Collector(suite.path)
            source, entry = _component(col, params.teacher, ("teacher",), "source")
            issues += [f"{i.path}: {i.message}" for i in col.issues]
            if source is not None and entry.modality(source.name) != source_modality(pair):
                issues.append(f"teacher: source '{source.ref}' is a {entry.modality(source.name)} model; "
                              f"the pair's source is a {source_modality(pair)} model")
            if params.teacher_strategy not in STRATEGIES or params.teacher_strategy == "distill":
                names = [n for n in STRATEGIES.names() if n != "distill"]
                close = did_you_mean(params.teacher_strategy, names)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                issues.append(f"teacher_strategy '{params.teacher_strategy}' is not a strategy a teacher can use.{hint}")
            elif any(f.is_required() for f in STRATEGIES.get(params.teacher_strategy).Params.model_fields.values()):
                issues.append(f"teacher_strategy '{params.teacher_strategy}' needs parameters of its own; "
                              "give the teacher its own entry in the suite and name its label as `teacher:`")
            from harness.config.schema import TRAIN_KEYS, TrainConfig

            bad = sorted(set(params.teacher_train) - TRAIN_KEYS)
            if bad:
                issues.append(f"teacher_train: unknown key(s) {', '.join(bad)} (training keys only)")
            else:
                col = Collector(suite.path)
                col.model(TrainConfig, {**suite.defaults, **pair.train, **params.teacher_train}, ("teacher_train",))
                issues += [f"{i.path}: {i.message}" for i in col.issues]
        return issues

    @classmethod
    def complete(cls, params, pair, suite, smoke):
        from harness.plan import resolve

        if isinstance(params.teacher, str):
            strat = next(s for s in suite.strategies if s.label == params.teacher)
            source = pair.source.as_dict("model")
        else:
            strat = StrategySpec(params.teacher_strategy, "distill-teacher", {}, dict(params.teacher_train))
            source = dict(params.teacher)
        train, tparams = resolve(suite, pair, strat, smoke)
        run = {"pair": pair.id, "label": strat.label, "strategy": strat.name, "params": tparams, "train": train,
               "source": source, "target": pair.target.as_dict("dataset"), "smoke": smoke}
        return params.model_copy(update={"teacher_run": run})

    def adapt(self, model, data, ctx):
        from harness.run.seed import seed_everything

        if self.params.teacher_run is None:
            raise ValueError("distill: teacher_run is missing (run it from a suite plan, which fills it in)")
        spec = teacher_spec(self.params.teacher_run, ctx.seed)
        train = data.splits["train"]
        key = {"teacher": spec.run_id, "student_source": ctx.source, "target": ctx.target,
               "split": data.split_info, "preprocessing": data.preprocessing, "train_used": len(train)}
        path = _cache_path(ctx.cache_dir, key)
        stored = _load(path)
        self.teacher_info = {"run_id": spec.run_id, "label": spec.label, "strategy": spec.strategy,
                             "cache_hit": stored is not None}
        if stored is None:
            t0 = time.perf_counter()
            teacher, scores = train_teacher(spec, ctx)
            inputs = train if spec.source == ctx.source else teacher_inputs(teacher, spec, self.train.max_train_samples)
            soft = soft_targets(teacher.to(ctx.device), inputs, ctx.device, self.train.eval_batch_size or 2 * self.train.batch_size)
            stored = {"logits": torch.cat(soft), "lengths": torch.tensor([len(s) for s in soft]), "scores": scores}
            if path:
                _save(path, stored)
            self.teacher_info["train_s"] = round(time.perf_counter() - t0, 3)
            del teacher
        self.teacher_info["scores"] = stored["scores"]
        # The student's RNG stream must not depend on whether the teacher was trained here.
        seed_everything(ctx.seed, self.train.deterministic)
        soft = list(torch.split(stored["logits"], stored["lengths"].tolist()))
        if len(soft) != len(train):
            raise ValueError(f"distill: {len(soft)} teacher predictions for {len(train)} training examples")
        splits = {**data.splits, "train": with_soft_targets(train, soft)}
        return model, TargetData(data.label_names, splits, data.split_info, data.preprocessing, data.extra)

    def extra_loss(self, model, batch, out):
        if "teacher_logits" not in batch:  # evaluation batches carry no teacher
            return None
        from harness.run.loop import task_loss

        ce = task_loss(out["logits"], batch["labels"])
        kd = kd_term(out["logits"], batch["teacher_logits"], self.params.temperature, batch.get("teacher_mask"))
        # The loop adds this to its CE: total = (1 − mix)·CE + mix·T²·KL.
        return self.params.mix * (kd - ce)

    def report(self, model):
        return {"teacher": self.teacher_info, "temperature": self.params.temperature, "mix": self.params.mix}
