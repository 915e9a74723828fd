"""The frozen-feature cache: a frozen backbone's features computed once per
(source, target, split, preprocessing) and reused across epochs, seeds and strategies.

Files are written atomically with a SHA-256 beside them and verified on read; a file that
fails the check is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.records import atomic_write_bytes
from harness.sources.base import pool_features
from harness.targets.base import Split, TargetData, TensorSplit

FEATURE_VERSION = 1


def feature_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({**parts, "feature_version": FEATURE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


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


def _save(path: Path, splits: dict[str, TensorSplit]) -> None:
    buf = io.BytesIO()
    torch.save({k: s.tensors for k, s in splits.items()}, buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())


def _load(path: Path) -> dict[str, dict[str, torch.Tensor]] | None:
    sidecar = path.with_suffix(".sha256")
    if not path.exists() or not sidecar.exists():
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sidecar.read_text().strip():
        return None  # torn or tampered: recompute
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def cached_features(backbone, data: TargetData, key_parts: dict[str, Any], cache_dir: Path | None,
                    device: torch.device, batch_size: int, show_progress: bool = False) -> tuple[TargetData, bool]:
    """Feature splits for ``data`` (from the cache when a verified file exists). Returns (data, hit)."""
    path = Path(cache_dir) / "features" / f"{feature_key(key_parts)}.pt" if cache_dir else None
    stored = _load(path) if path else None
    hit = stored is not None
    if stored is not None:
        splits = {k: TensorSplit(t, data.splits[k].sequences) for k, t in stored.items()}
    else:
        splits = {k: extract(backbone, s, device, batch_size, show_progress, desc=f"features:{k}")
                  for k, s in data.splits.items()}
        if path:
            _save(path, splits)
    out = TargetData(data.label_names, splits, data.split_info, data.preprocessing, data.extra)
    return out, hit
