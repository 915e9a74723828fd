"""What a run exports for the runs that read it (the plan graph's edges carry data through here).

``weights``: the trained backbone's state dict and head (a ``pretrain:`` source's run exports them;
every run transferring that source loads them). ``train_logits``: the trained model's logits on its own training split (un-augmented, eval mode),
one ``(1, C)`` row per image or text, one ``(words, C)`` block per sentence, with the content key
of every example — a reader (``distill``) matches its own examples to the teacher's by key, so a
teacher with another source (other preprocessing, another tokeniser) lines up all the same.

Outputs live in the cache (:mod:`harness.cache`) under the run's ``compute_key``: the trial
and the final that compute the same thing share them. The cache need not be shared by the nodes
that run the plan: on Ray the outputs also travel as objects from the exporting task to the tasks
that read them, which file them in their own node's cache (:mod:`harness.executors.ray_executor`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness import cache
from harness.targets.base import Split, TargetData

OUTPUT_VERSION = 1


@torch.inference_mode()
def soft_targets(model, split: Split, device: torch.device, batch_size: int) -> list[torch.Tensor]:
    """The model's logits per example: ``(1, C)`` per image/text, ``(words, C)`` per sentence."""
    from harness.run.loop import to_device

    was_training = model.training
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
    model.train(was_training)
    return out  # type: ignore[return-value]


def train_logits(model, data: TargetData, device: torch.device, batch_size: int) -> dict[str, Any]:
    soft = soft_targets(model, data.splits["train"], device, batch_size)
    return {"logits": torch.cat(soft), "lengths": torch.tensor([len(s) for s in soft]),
            "keys": [str(k) for k in data.keys["train"]]}


def weights(model, data: TargetData, device: torch.device, batch_size: int) -> dict[str, Any]:
    """The trained backbone's weights (what a ``pretrain:`` source loads), its head over the
    pretraining task's labels (the source head LEEP and NCE read), and the content keys of the
    examples it trained on (a reader checks none is one it validates or tests on)."""
    state = {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items()}
    head = (model.head.weight.detach().cpu().clone(), model.head.bias.detach().cpu().clone())
    return {"state": state, "head": head, "label_names": list(data.label_names),
            "train_keys": [str(k) for k in data.keys.get("train", [])]}


EXPORTS = {"train_logits": train_logits, "weights": weights}


def path(cache_dir, compute_key: str, name: str):
    return cache.entry(cache_dir, "outputs", cache.key({"run": compute_key, "output": name}, OUTPUT_VERSION))


def export(model, data: TargetData, names: tuple[str, ...], device: torch.device, batch_size: int,
           scores: dict[str, Any]) -> dict[str, Any]:
    """The outputs ``names`` of a finished run (each with the run's own scores)."""
    return {name: {**EXPORTS[name](model, data, device, batch_size), "scores": scores} for name in names}


def save(cache_dir, compute_key: str, outputs: dict[str, Any]) -> None:
    for name, payload in outputs.items():
        cache.save(path(cache_dir, compute_key, name), payload)


def load(cache_dir, compute_key: str, name: str) -> dict[str, Any] | None:
    return cache.load(path(cache_dir, compute_key, name))


def align(payload: dict[str, Any], keys: np.ndarray, what: str) -> list[torch.Tensor]:
    """The exported per-example rows in the order of ``keys`` (a reader's own examples); an error
    naming how many are missing when the exporting run did not see them all."""
    rows = list(torch.split(payload["logits"], payload["lengths"].tolist()))
    by_key = dict(zip(payload["keys"], rows, strict=True))
    missing = [k for k in keys if str(k) not in by_key]
    if missing:
        raise ValueError(f"{what}: {len(missing)} of the {len(keys)} training examples are not among the "
                         f"{len(by_key)} the exporting run trained on (another split, subset or domain?)")
    return [by_key[str(k)] for k in keys]
