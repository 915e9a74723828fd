"""Domains across targets: ``unlabeled:`` and ``eval_domain:`` naming another registered target.

A target that knows domains of its own takes a name (``sklearn/digits`` with ``unlabeled:
shifted``, ``packaged/wnut16`` with ``eval_domain: noisy``). **Every** target also takes a mapping
that names another target block, whose examples then stand for the target domain::

    target:
      dataset: torchvision/mnist                  # labelled training domain
      task: image-classification
      unlabeled: {dataset: torchvision/usps}      # its train split, labels dropped
      eval_domain: {dataset: torchvision/usps}    # its val and test splits replace the pair's

``unlabeled: {dataset: …, split: train|val|test}`` (default ``train``) exposes that split's inputs,
without labels, as ``extra["unlabeled"]`` (what ``dann``, ``coral``, ``mmd``,
``importance_weighting`` and ``subspace_alignment`` read). ``eval_domain: {dataset: …}`` replaces
the pair's val and test splits with the other target's: the pair is tuned and scored there. Both
load the other target with the pair's source (its resolution, tokenizer) and task; ``eval_domain``
needs the same label names (in any order: labels are remapped to the pair's). The one target
block (with every key the other target takes) is what the run's identity hashes, so another
domain is another run. The record's ``data`` says which domain a run trained, adapted to and was
scored on; the splits still pass the content check of :func:`harness.targets.load.audit` after the
swap, so a "domain" that shares examples with the training split is refused as a leak.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import HarnessError
from harness.targets.base import SOURCE_VAL, LeakError, Split, TargetData, TensorSplit, TokenSplit
from harness.targets.naming import SPLIT_KEY, domain_name

if TYPE_CHECKING:
    import torch

CROSS_KEYS = ("unlabeled", "eval_domain")
UNLABELED_SPLITS = ("train", "val", "test")


def crossing(target: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The keys of a target block that name another target (mappings), by key."""
    return {k: v for k in CROSS_KEYS if isinstance(v := target.get(k), dict)}


class WithoutLabels(Split):
    """A split's inputs with every label replaced by -100 (the ignore index): what a DA strategy may
    read of the target domain. The labels' shape stays, so a text-classification batch is pooled
    (its first token) like the labelled batches it is compared with."""

    def __init__(self, split: Split):
        self.split = split
        self.sequences = split.sequences

    def __len__(self) -> int:
        return len(self.split)

    def select(self, indices: np.ndarray) -> WithoutLabels:
        return WithoutLabels(self.split.select(indices))

    def to_device(self, device: torch.device, num_workers: int = 0) -> WithoutLabels:
        move = getattr(self.split, "to_device", None)
        return self if move is None else WithoutLabels(move(device, num_workers))

    def example_keys(self) -> np.ndarray:
        return self.split.example_keys()

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                group_by_length: bool = False) -> Iterator[dict]:
        import torch

        for batch in self.split.batches(batch_size, shuffle, generator, group_by_length):
            out = {k: v for k, v in batch.items() if k != "index"}
            if "labels" in out:  # ignored everywhere, and the shape still says how to pool (text: one per example)
                out["labels"] = torch.full_like(out["labels"], -100)
            yield out


def relabel(split: Split, mapping: list[int]) -> Split:
    """``split`` with label ``i`` renamed ``mapping[i]`` (another target's classes in the pair's order)."""
    import torch

    if mapping == list(range(len(mapping))):
        return split
    table = torch.as_tensor(mapping, dtype=torch.long)

    def remap(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t >= 0, table.to(t.device)[t.clamp_min(0)], t)

    if isinstance(split, TensorSplit):
        return TensorSplit({**split.tensors, "labels": remap(split.tensors["labels"])}, split.sequences)
    if isinstance(split, TokenSplit):
        if split.doc_labels is not None:
            return TokenSplit(split.input_ids, split.labels, split.sequences, split.pad_id,
                              [mapping[y] for y in split.doc_labels])
        return TokenSplit(split.input_ids, [[mapping[y] if y >= 0 else y for y in row] for row in split.labels],
                          split.sequences, split.pad_id)
    if isinstance(getattr(split, "labels", None), torch.Tensor):  # decoded or streamed images
        return replace_labels(split, remap(split.labels))
    raise HarnessError(f"cannot reorder the labels of a {type(split).__name__}: give the other domain the "
                       "pair's label order")


def replace_labels(split: Split, labels: torch.Tensor) -> Split:
    clone = object.__new__(type(split))
    clone.__dict__.update(split.__dict__)
    clone.labels = labels
    return clone


def with_domains(data: TargetData, target: dict[str, Any], ref: str,
                 load: Callable[[dict[str, Any]], TargetData]) -> TargetData:
    """``data`` (the pair's own target, loaded) given the other targets its block names; ``load``
    loads and checks another target block with the pair's source and task (the caller's loader:
    loading is the layer above this module)."""
    cross = crossing(target)
    extra, splits, keys, origins = dict(data.extra), dict(data.splits), dict(data.keys), dict(data.origins)
    info = dict(data.split_info)
    if "unlabeled" in cross:
        block = dict(cross["unlabeled"])
        which = block.pop(SPLIT_KEY, "train")
        other = load(block)
        extra["unlabeled"] = WithoutLabels(other.splits[which])
        info["unlabeled_domain"] = domain_name(cross["unlabeled"])
        info["unlabeled_split"] = {"dataset": block["dataset"], "split": which, "size": len(other.splits[which]),
                                   "fingerprint": other.split_info.get("fingerprint", {}).get(which)}
    unlabeled_keys = None
    if "unlabeled" in cross:
        unlabeled_keys = set(other.keys[which])
    if "eval_domain" in cross:
        block = cross["eval_domain"]
        other = load(block)
        mapping = label_mapping(data.label_names, other.label_names, ref, block["dataset"])
        extra.setdefault(SOURCE_VAL, data.splits["val"])  # the training domain's val: label-free selection reads it
        for k in ("val", "test"):
            splits[k] = relabel(other.splits[k], mapping)
            keys[k] = other.keys[k]
            origins[k] = other.origins.get(k, "pool")
        info["eval_domain"] = domain_name(block)
        info["eval_split"] = {"dataset": block["dataset"], "sizes": {k: len(other.splits[k]) for k in ("val", "test")},
                              "split_info": {k: v for k, v in other.split_info.items() if k != "fingerprint"}}
    if unlabeled_keys is not None:
        for k in ("val", "test"):
            shared = unlabeled_keys.intersection(keys[k])
            if shared:
                raise LeakError(f"{ref}: {len(shared)} example(s) of the unlabeled domain "
                                f"'{domain_name(cross['unlabeled'])}' are in the {k} split the pair is tuned or scored "
                                "on: adapting to the very inputs it is scored on (transductive) is not what this "
                                "measures; name the other target's train split (the default) as unlabeled")
    return replace(data, splits=splits, extra=extra, keys=keys, origins=origins, split_info=info)


def label_mapping(ours: list[str], theirs: list[str], ref: str, other: str) -> list[int]:
    """Position in ``ours`` of each of ``theirs``; a clear error when the label sets differ."""
    if sorted(ours) != sorted(theirs):
        missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        raise HarnessError(f"{ref}: eval_domain '{other}' has other labels than the pair's target "
                           f"(missing: {missing[:5] or 'none'}; not in the pair: {extra[:5] or 'none'}): a domain "
                           "shift keeps the label space")
    index = {name: i for i, name in enumerate(ours)}
    return [index[name] for name in theirs]
