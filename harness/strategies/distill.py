"""``distill``: knowledge distillation — a student learns from a teacher's softened predictions.

loss = (1 − mix)·CE(student, y) + mix·T²·KL(softmax(teacher/T) ‖ softmax(student/T))
(Hinton, Vinyals & Dean, 2015), each term averaged over labelled positions (examples, or
first sub-words for token tasks).

The teacher is either

* another strategy of the suite, by label (``teacher: full_finetune``): the run that label makes
  on the same pair with the same seed (its final: with a search, the chosen point); or
* a source model whose head is fitted to the target (``teacher: {model: ns/name, …}``): trained
  by ``teacher_strategy`` (default ``linear_probe``) with ``defaults < pair.train <
  teacher_train``, as an aux run of the plan.

Either way the teacher is a node of the plan graph (:meth:`Distill.inputs`): the student runs
after it, its run_id hashes the teacher's, and it reads the logits the teacher's own run exported
on its training split (:mod:`harness.run.outputs`), matched to the student's examples by content
key — so a teacher with another image size or tokeniser lines up all the same. The student is the
pair's source.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import Field

from harness.config.schema import Params, StrategySpec
from harness.errors import did_you_mean
from harness.registry import STRATEGIES
from harness.strategies.base import Input, Strategy
from harness.targets.base import Split, TensorSplit, TokenSplit
from harness.tasks import task_loss

if TYPE_CHECKING:
    import torch


class DistillParams(Params):
    teacher: str | dict[str, Any] = Field(
        ..., description="a strategy label of this suite, or a source spec {model: ns/name, …} whose head is fine-tuned")
    temperature: float = Field(2.0, gt=0, description="softmax temperature T of both teacher and student")
    mix: float = Field(0.5, ge=0, le=1, description="weight of the distillation term; 1 − mix weighs the label CE")
    teacher_strategy: str = Field("linear_probe", description="how a source-spec teacher is fitted to the target")
    teacher_train: dict[str, Any] = Field(default_factory=dict,
                                          description="training keys for a source-spec teacher (over defaults and pair.train)")


def kd_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the positions in ``mask``."""
    import torch.nn.functional as F

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
    return (1 - mix) * task_loss(student, labels) + mix * kd_term(student, teacher, temperature, mask)


class SoftTokenSplit(TokenSplit):
    """A token split whose batches carry the teacher's logits at the labelled positions."""

    def __init__(self, base: TokenSplit, soft: list[torch.Tensor]):
        super().__init__(base.input_ids, base.labels, base.sequences, base.pad_id, base.doc_labels)
        self.soft = soft

    def select(self, indices):
        return SoftTokenSplit(super().select(indices), [self.soft[int(i)] for i in indices])

    def collate(self, idx):
        import torch

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


def with_soft_targets(split: Split, soft: list[torch.Tensor]) -> Split:
    import torch

    if isinstance(split, TokenSplit):
        return SoftTokenSplit(split, soft)
    if isinstance(split, TensorSplit):
        return TensorSplit({**split.tensors, "teacher_logits": torch.cat(soft)}, split.sequences)
    raise TypeError(f"distill cannot attach teacher logits to a {type(split).__name__}")


def source_modality(pair) -> str:
    from harness.registry import SOURCES

    return SOURCES.get(pair.source.namespace).modality(pair.source.name)


@STRATEGIES.register("distill", description="student learns from a teacher run's softened logits: (1−mix)·CE + mix·T²·KL")
class Distill(Strategy):
    """Knowledge distillation from a teacher (a suite label or a source with a fitted head)."""

    Params = DistillParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.teacher_info: dict[str, Any] = {}

    @classmethod
    def check(cls, params, pair, suite):
        from harness.config.components import parse_component
        from harness.registry import SOURCES

        issues = []
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
        elif isinstance(params.teacher, dict) and "pretrain" in params.teacher:
            issues.append("teacher: a source-spec teacher takes no `pretrain:` block; to distil from a pretrained "
                          "source, make it the pair's source and name that pair's cell as the teacher (teacher: <label>)")
        else:
            source, found = parse_component(params.teacher, ("teacher",), "source")
            issues += found
            entry = SOURCES.get(source.namespace) if source is not None else None
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
            from harness.config.issues import model_issues
            from harness.config.schema import TRAIN_KEYS, TrainConfig, layered_settings

            bad = sorted(set(params.teacher_train) - TRAIN_KEYS)
            if bad:
                issues.append(f"teacher_train: unknown key(s) {', '.join(bad)} (training keys only)")
            else:  # the settings rule, the teacher's own block as its strategy layer
                train, _ = layered_settings(suite.defaults, pair, cls.inputs(params, pair, suite)["teacher"].strategy)
                issues += model_issues(TrainConfig, train, ("teacher_train",))
        return issues

    @classmethod
    def inputs(cls, params, pair, suite):
        if isinstance(params.teacher, str):
            return {"teacher": Input(label=params.teacher)}
        strat = StrategySpec(params.teacher_strategy, "teacher", {}, dict(params.teacher_train))
        return {"teacher": Input(strategy=strat, source=dict(params.teacher))}

    def adapt(self, model, data, ctx):
        teacher = ctx.inputs.get("teacher")
        if teacher is None:
            raise ValueError("distill: no teacher given (run it from a suite plan, which makes the teacher a "
                             "dependency of the student)")
        payload = teacher.outputs["train_logits"]
        train = data.splits["train"]
        soft = ctx.align(payload, data.keys["train"], "distill: the teacher's logits")
        self.teacher_info = {"run_id": teacher.run_id, "scores": payload.get("scores"),
                             "recomputed": bool(teacher.outputs.get("regenerated"))}
        return model, replace(data, splits={**data.splits, "train": with_soft_targets(train, soft)})

    def extra_loss(self, model, batch, out):
        if "teacher_logits" not in batch:  # evaluation batches carry no teacher
            return None
        ce = task_loss(out["logits"], batch["labels"])
        kd = kd_term(out["logits"], batch["teacher_logits"], self.params.temperature, batch.get("teacher_mask"))
        # The loop adds this to its CE: total = (1 − mix)·CE + mix·T²·KL.
        return self.params.mix * (kd - ce)

    def report(self, model):
        return {"teacher": self.teacher_info, "temperature": self.params.temperature, "mix": self.params.mix}
