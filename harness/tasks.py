"""Tasks: what a target asks of a model (its modality, its loss, its metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.registry import TASKS

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Task:
    """A task is data, not code: the loop treats every task alike (cross-entropy on labels,
    ignore index -100), and the metrics named here score the predictions."""

    name: str
    modality: str  # "image" | "text"
    per_token: bool
    metrics: tuple[str, ...]
    primary: str
    description: str


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The one loss of every task: cross-entropy in fp32, positions labelled -100 ignored (token
    logits ``(B, T, C)`` are flattened)."""
    import torch.nn.functional as F  # here, not at the top: validating a suite never loads torch

    if logits.ndim == 3:
        logits, labels = logits.flatten(0, 1), labels.flatten()
    return F.cross_entropy(logits.float(), labels, ignore_index=-100)


for _t in (
    Task("image-classification", "image", False, ("accuracy", "macro_f1"), "accuracy",
         "one label per image; accuracy and macro-F1"),
    Task("text-classification", "text", False, ("accuracy", "macro_f1"), "accuracy",
         "one label per text; accuracy and macro-F1"),
    Task("token-classification", "text", True, ("seqeval",), "f1",
         "one IOB2 tag per word (first sub-word); seqeval entity-level P/R/F1"),
):
    TASKS.register(_t.name, _t, description=_t.description)
