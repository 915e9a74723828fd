"""Image targets: scikit-learn digits (offline) and tiny synthetic images for tests.

Images are decoded once, resized to the source's resolution, grey → 3 channels, and
normalised with the source's mean/std, then kept in memory as one tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from harness.registry import TARGETS
from harness.targets.base import SplitParams, Target, TargetData, TensorSplit, describe_split, split_indices


def to_model_input(images: torch.Tensor, spec) -> torch.Tensor:
    """``(N, C, H, W)`` floats in [0, 1] → the backbone's size, 3 channels, normalised."""
    if images.shape[1] == 1 and spec.channels == 3:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[1] != spec.channels:
        raise ValueError(f"images have {images.shape[1]} channels; the source expects {spec.channels}")
    if images.shape[-1] != spec.size or images.shape[-2] != spec.size:
        mode = "bicubic" if spec.interpolation == "bicubic" else "bilinear"
        images = F.interpolate(images, size=(spec.size, spec.size), mode=mode, align_corners=False).clamp(0, 1)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return ((images - mean) / std).contiguous()


def image_target_data(images: torch.Tensor, labels: np.ndarray, label_names: list[str], p: SplitParams,
                      backbone, source_desc: str, domains: dict[str, torch.Tensor] | None = None) -> TargetData:
    spec = backbone.input_spec
    x = to_model_input(images, spec)
    y = torch.as_tensor(labels, dtype=torch.long)
    parts = split_indices(len(y), p.val_fraction, p.test_fraction, p.split_seed)
    splits = {k: TensorSplit({"pixel_values": x[v], "labels": y[v]}) for k, v in parts.items()}
    extra = {k: TensorSplit({"pixel_values": to_model_input(imgs, spec)}) for k, imgs in (domains or {}).items()}
    return TargetData(
        label_names=label_names, splits=splits, extra=extra,
        split_info=describe_split(parts, seed=p.split_seed, val_fraction=p.val_fraction, test_fraction=p.test_fraction,
                                  source=source_desc),
        preprocessing={"size": spec.size, "mean": list(spec.mean), "std": list(spec.std),
                       "interpolation": spec.interpolation, "grey_to_rgb": images.shape[1] == 1},
    )


class DigitsParams(SplitParams):
    image_size: int | None = Field(None, ge=8, le=1024, description="resize to this (default: the source's resolution)")


@TARGETS.register("sklearn", description="scikit-learn's bundled digits (1,797 8×8 greyscale images, 10 classes), offline")
class SklearnImages(Target):
    Params = DigitsParams
    tasks = frozenset({"image-classification"})
    default_task = "image-classification"
    names = ("digits",)

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        from sklearn.datasets import load_digits

        p = DigitsParams.model_validate(params)
        d = load_digits()
        images = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        if p.image_size:
            backbone = _with_size(backbone, p.image_size)
        return image_target_data(images, d.target, [str(c) for c in d.target_names], p, backbone, "sklearn.datasets.load_digits")


class _SizedBackbone:
    """A view of a backbone with its input resolution overridden by the target."""

    def __init__(self, backbone, size):
        from dataclasses import replace

        self.input_spec = replace(backbone.input_spec, size=size)


def _with_size(backbone, size):
    return _SizedBackbone(backbone, size)


class TinyImageParams(SplitParams):
    n: int = Field(96, ge=12, le=10000)
    num_classes: int = Field(3, ge=2, le=20)


@TARGETS.register("test", description="tiny synthetic targets for tests: tiny_images (class = bright quadrant), tiny_ner")
class TinyTargets(Target):
    Params = TinyImageParams
    tasks = frozenset({"image-classification", "token-classification"})
    names = ("tiny_images", "tiny_ner")

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        if name == "tiny_ner":
            from harness.targets.tokens import tiny_ner

            return tiny_ner(params, backbone)
        p = TinyImageParams.model_validate(params)
        g = torch.Generator().manual_seed(p.split_seed)
        labels = torch.randint(0, p.num_classes, (p.n,), generator=g)
        images = torch.rand((p.n, 3, 12, 12), generator=g) * 0.3
        for i, c in enumerate(labels.tolist()):  # a learnable signal: class c lights one band
            images[i, :, (c * 12) // p.num_classes:((c + 1) * 12) // p.num_classes, :] += 0.6
        return image_target_data(images.clamp(0, 1), labels.numpy(), [f"c{c}" for c in range(p.num_classes)],
                                 p, backbone, "synthetic")
