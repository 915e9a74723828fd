"""What a domain-adaptation run measures at its end so that a search can choose its point without
target labels: every validator of :mod:`harness.run.validators` on the trained model, from its
outputs on the source domain's labelled validation split (``TargetData.extra["source_val"]``, or
``val`` itself when the pair is scored in its training domain), the source training split (DEV's
domain classifier) and the unlabeled target data (``extra["unlabeled"]``).

Each split is capped at :data:`ROWS` examples (a fixed subset, the same for every run of a
pair). :func:`frozen` does the same for a head over frozen features (the probe and subspace
alignment), for every C of its grid. The target side is computed inside the strategy's ``evaluating`` context (AdaBN scores
the target with target statistics), the source side outside it. A token task's DEV works on
sentences (mean-pooled features; a sentence's loss is the mean over its labelled words); its
entropy and SND on every non-padding token of the unlabeled sentences (no labels say which are
first sub-words).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from harness.run import features, validators
from harness.run.loop import autocast, evaluate, inference, scored
from harness.run.seed import SUBSAMPLE_SEED
from harness.targets.base import SOURCE_VAL, Split, TargetData, TensorSplit, sample_indices
from harness.tasks import Task

ROWS = 512  # examples per split the validators read


@torch.inference_mode()
def outputs(model: torch.nn.Module, split: Split, device: torch.device, batch_size: int,
            precision: str) -> dict[str, np.ndarray]:
    """Per example: pooled features and the mean task loss over its labelled positions (NaN without
    labels); per row (an image, or a labelled word / any non-padding token): logits."""
    pooled, losses, logits = [], [], []
    with inference(model):
        for batch in split.batches(batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, precision):
                out = model(batch)
            feats, scores = out["features"].float(), out["logits"].float()
            labels = batch.get("labels")  # unlabeled images carry none
            if labels is None:
                labels = torch.full(scores.shape[:-1], -100, dtype=torch.long, device=scores.device)
            if feats.ndim == 3:  # tokens
                mask = batch["attention_mask"].unsqueeze(-1).to(feats.dtype)
                pooled.append((feats * mask).sum(1) / mask.sum(1).clamp_min(1))
                labelled = labels != -100
                rows = labelled if bool(labelled.any()) else batch["attention_mask"].bool()
                logits.append(scores[rows])
                per = torch.nn.functional.cross_entropy(scores.transpose(1, 2), labels, ignore_index=-100,
                                                        reduction="none")
                count = labelled.sum(1)
                losses.append(torch.where(count > 0, (per * labelled).sum(1) / count.clamp_min(1), torch.nan))
            else:
                pooled.append(feats)
                logits.append(scores)
                known = labels >= 0
                per = torch.nn.functional.cross_entropy(scores, labels.clamp_min(0), reduction="none")
                losses.append(torch.where(known, per, torch.nan))
    return {"pooled": torch.cat(pooled).cpu().double().numpy(), "loss": torch.cat(losses).cpu().double().numpy(),
            "logits": torch.cat(logits).cpu().double().numpy()}


def source_val_split(data: TargetData, elsewhere: bool) -> Split | None:
    """The labelled validation split of the training domain: the target's ``source_val`` when val
    is another domain's (``elsewhere``), val itself when the pair is scored where it trains; None
    when the target does not give it."""
    if SOURCE_VAL in data.extra:
        return data.extra[SOURCE_VAL]
    return None if elsewhere else data.splits["val"]


def measure(model: torch.nn.Module, data: TargetData, task: Task, evaluating: contextlib.AbstractContextManager,
            oracle: float | None, device: torch.device, batch_size: int, precision: str,
            elsewhere: bool) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Every validator's score for ``model`` (higher = better) and facts about how they were taken."""
    scores: dict[str, float | None] = dict.fromkeys(validators.VALIDATORS)
    scores["oracle"] = oracle
    facts: dict[str, Any] = {"rows": ROWS}
    with evaluating:
        target = outputs(model, data.extra["unlabeled"].sample(ROWS, SUBSAMPLE_SEED), device, batch_size, precision)
    scores["entropy"] = round(validators.entropy_score(target["logits"]), 6)
    scores["snd"] = round(validators.snd_score(target["logits"]), 6)
    source_val = source_val_split(data, elsewhere)
    if source_val is None:
        facts["source_val"] = "no labelled validation split of the training domain: source_val and dev not measured"
        return scores, facts
    source_val = source_val.sample(ROWS, SUBSAMPLE_SEED)
    primary = scored(model, source_val, task, data.label_names, device, batch_size, precision)[0].get(task.primary)
    scores["source_val"] = None if primary is None else round(float(primary), 6)
    val = outputs(model, source_val, device, batch_size, precision)
    train = outputs(model, data.splits["train"].sample(ROWS, SUBSAMPLE_SEED), device, batch_size, precision)
    known = ~np.isnan(val["loss"])
    dev, facts["dev"] = validators.dev_score(train["pooled"], target["pooled"], val["pooled"][known],
                                             val["loss"][known])
    scores["dev"] = round(dev, 6)
    return scores, facts


def frozen(head: torch.nn.Linear, backbone: torch.nn.Module, data: TargetData, feats: TargetData, task: Task,
           device: torch.device, batch_size: int, elsewhere: bool,
           source_map: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
           target_map: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
           ) -> tuple[Callable[[], dict[str, Any]], dict[str, Any]] | None:
    """The label-free validators of a linear head over a frozen backbone's features, as a closure
    the L-BFGS grid calls after each C's fit (:func:`harness.run.logistic.select_c`): the features
    it reads are computed once, the head's outputs per call. ``feats`` are the probe's feature
    splits (``train``: the labelled source domain; ``test``: the evaluated domain); ``source_map``
    and ``target_map`` are what the strategy does to each domain's features (subspace alignment's
    projections; identity for the probe). Rows are capped at :data:`ROWS` as in :func:`measure`;
    a token task's validators read word rows (the probe classifies words, not sentences): DEV's
    domain classifier and losses too. Returns (the closure, facts), or None without unlabeled data.

    The closure returns ``{"validators": {source_val, dev, entropy, snd}, "test": the test score}``
    (the test score for the report's table of what each validator would have chosen, never for
    choosing)."""
    if "unlabeled" not in data.extra:
        return None
    backbone = backbone.to(device)
    target = target_map(features.frozen_rows(backbone, data.extra["unlabeled"].sample(ROWS, SUBSAMPLE_SEED), device,
                                             batch_size)).to(device)
    facts: dict[str, Any] = {"rows": ROWS}
    source_val = source_val_split(data, elsewhere)
    val, weights = None, None
    if source_val is None:
        facts["source_val"] = "no labelled validation split of the training domain: source_val and dev not measured"
    else:
        source_val = source_val.sample(ROWS, SUBSAMPLE_SEED)
        t = features.extract(backbone, source_val, device, batch_size).tensors
        val = TensorSplit({**t, "features": source_map(t["features"])}, source_val.sequences)
        train = feats.splits["train"].tensors["features"]
        keep = sample_indices(len(train), ROWS, SUBSAMPLE_SEED)
        train = train if keep is None else train[torch.as_tensor(keep)]
        weights, facts["dev"] = validators.density_ratios(train.double().cpu().numpy(), target.double().cpu().numpy(),
                                                          val.tensors["features"].double().cpu().numpy())
    from harness.sources.nets import HeadModel

    probe = HeadModel(head)

    def validate() -> dict[str, Any]:
        with torch.no_grad():
            logits = head(target).double().cpu().numpy()
            scores: dict[str, float | None] = {"entropy": round(validators.entropy_score(logits), 6),
                                               "snd": round(validators.snd_score(logits), 6),
                                               "source_val": None, "dev": None}
            if val is not None:
                primary = evaluate(probe, val, task, data.label_names, device, 4096, "fp32").get(task.primary)
                scores["source_val"] = None if primary is None else round(float(primary), 6)
                x, y = val.tensors["features"].to(device), val.tensors["labels"].to(device)
                loss = torch.nn.functional.cross_entropy(head(x).double(), y, reduction="none", ignore_index=-100)
                known = (y != -100).cpu().numpy()
                scores["dev"] = round(-validators.dev_risk(loss.cpu().numpy()[known], weights[known]), 6)
            test = evaluate(probe, feats.splits["test"], task, data.label_names, device, 4096, "fp32").get(task.primary)
        return {"validators": scores, "test": None if test is None else round(float(test), 6)}

    return validate, facts
