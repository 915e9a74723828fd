"""The frozen-feature cache: a frozen backbone's features computed once per
(source, target, split, preprocessing) and reused across epochs, seeds and strategies.

Files are written atomically with a SHA-256 beside them and verified on read; a file that
fails the check is recomputed, never trusted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness import cache
from harness.sources.nets import pool_features
from harness.targets.base import Split, TargetData, TensorSplit

FEATURE_VERSION = 2  # 2: the entry keeps the extraction time beside the splits


def feature_key(parts: dict[str, Any]) -> str:
    return cache.key(parts, FEATURE_VERSION)


@dataclass(frozen=True, eq=False)
class FeatureKey:
    """What a set of features is (:func:`frozen_key`'s parts, plus any transform a strategy applied):
    a strategy extends it (:meth:`derived`) and names it in a memoised computation's parts, and the
    runner turns it into the cache's key (:attr:`id`), so no strategy hashes anything itself."""

    parts: dict[str, Any]

    def derived(self, **more: Any) -> FeatureKey:
        """The key of features mapped from these (``transform={...}``: what mapped them)."""
        return FeatureKey({**self.parts, **more})

    @property
    def id(self) -> str:
        return feature_key(self.parts)


@torch.inference_mode()
def extract(backbone: torch.nn.Module, split: Split, device: torch.device, batch_size: int,
            show_progress: bool = False, desc: str = "features") -> TensorSplit:
    """Run the frozen backbone over a split; token tasks keep one row per labelled word."""
    backbone.eval()
    feats, labels, index = [], [], []
    n_batches = -(-len(split) // batch_size)
    for batch in tqdm(split.batches(batch_size), total=n_batches, desc=desc, leave=False, disable=not show_progress):
        batch = {k: v.to(device) for k, v in batch.items()}
        f = backbone(batch).float()
        y = batch["labels"]
        if f.ndim == 3 and y.ndim == 2:  # per token: keep the labelled first sub-words
            mask = y != -100
            feats.append(f[mask].cpu())
            labels.append(y[mask].cpu())
            index.append(batch["index"].unsqueeze(1).expand_as(y)[mask].cpu())
        else:
            f = pool_features(f, batch)  # sequence classification on a token encoder: first token
            feats.append(f.cpu())
            labels.append(y.cpu())
            if "index" in batch:
                index.append(batch["index"].cpu())
    tensors = {"features": torch.cat(feats), "labels": torch.cat(labels)}
    if index:
        tensors["index"] = torch.cat(index)
    return TensorSplit(tensors, split.sequences)


def frozen_rows(backbone, split: Split, device: torch.device, batch_size: int) -> torch.Tensor:
    """Frozen features of a split's inputs (labels unread): one row per image, or per non-padding token."""
    backbone.eval()
    rows = []
    with torch.no_grad():
        for batch in split.batches(batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            f = backbone(batch).float()
            rows.append((f[batch["attention_mask"].bool()] if f.ndim == 3 else f).cpu())
    return torch.cat(rows)


def frozen_key(source: dict[str, Any], target: dict[str, Any], data: TargetData, seed: int,
               pretrain_run: str | None = None) -> dict[str, Any]:
    """What decides a frozen backbone's features on ``data``: the key the linear probe and
    ``harness rank`` share (one cache). A randomly initialised source's features are its seed's draw;
    a ``pretrain:`` source's are its pretrain run's weights, named by that run's id (which hashes
    everything the training read: the block, the suite's defaults, smoke mode, the harness version)."""
    from harness.sources.base import features_depend_on_seed, input_identity

    key = {"source": input_identity(source), "target": target, "split": data.split_info,
           "preprocessing": data.preprocessing, "sizes": {k: len(s) for k, s in data.splits.items()}}
    if features_depend_on_seed(source):
        key["seed"] = seed
    if pretrain_run is not None:
        key["pretrain_run"] = pretrain_run
    return key


def cached_features(backbone, data: TargetData, key_parts: dict[str, Any], cache_dir: Path | None,
                    device: torch.device, batch_size: int, show_progress: bool = False
                    ) -> tuple[TargetData, float | None]:
    """Feature splits for ``data`` (from the cache when a verified file exists). Returns the data
    and, on a cache hit, the seconds the extraction took when it ran (None: computed now). Entries
    of the old layout (splits alone) sit under FEATURE_VERSION 1 keys and are never read."""
    def compute() -> dict[str, Any]:
        t0 = time.perf_counter()
        tensors = {k: extract(backbone, s, device, batch_size, show_progress, desc=f"features:{k}").tensors
                   for k, s in data.splits.items()}
        return {"splits": tensors, "seconds": time.perf_counter() - t0}

    stored, hit = cache.load_or_compute(cache.entry(cache_dir, "features", feature_key(key_parts)), compute)
    splits = {k: TensorSplit(t, data.splits[k].sequences) for k, t in stored["splits"].items()}
    return replace(data, splits=splits), float(stored["seconds"]) if hit else None
