"""Tasks: what a target asks of a model (its modality, its loss, its metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.registry import TASKS


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


for _t in (
    Task("image-classification", "image", False, ("accuracy", "macro_f1"), "accuracy",
         "one label per image; accuracy and macro-F1"),
    Task("text-classification", "text", False, ("accuracy", "macro_f1"), "accuracy",
         "one label per text; accuracy and macro-F1"),
    Task("token-classification", "text", True, ("seqeval",), "f1",
         "one IOB2 tag per word (first sub-word); seqeval entity-level P/R/F1"),
):
    TASKS.register(_t.name, _t, description=_t.description)
