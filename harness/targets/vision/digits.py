"""Image targets: scikit-learn digits (offline) and tiny synthetic images for tests.

Images are decoded once, resized to the source's resolution, grey → 3 channels, and
normalised with the source's mean/std, then kept in memory as one tensor.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from harness.registry import TARGETS
from harness.targets.base import (
    SOURCE_VAL,
    SplitParams,
    Target,
    TargetData,
    TensorSplit,
    describe_split,
    keys_of_rows,
    split_indices,
)

if TYPE_CHECKING:
    import torch


def to_model_input(images: torch.Tensor, spec) -> torch.Tensor:
    """``(N, C, H, W)`` floats in [0, 1] → the backbone's size, 3 channels, normalised."""
    import torch
    import torch.nn.functional as F

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
                      spec, source_desc: str, domains: dict[str, torch.Tensor] | None = None,
                      eval_images: torch.Tensor | None = None, unlabeled: torch.Tensor | None = None,
                      target_shots: int | None = None, keep: np.ndarray | None = None, shots: int | None = None,
                      **how: Any) -> TargetData:
    """Split ``images`` train/val/test; ``eval_images`` (same examples, another domain) feed val
    and test; ``unlabeled`` (same examples) exposes its train-split images, without labels, as
    ``extra["unlabeled"]`` (domain adaptation); ``target_shots`` of them per class keep their
    labels as ``extra["target_labeled"]`` (supervised DA: CCSA). ``keep`` (a mask over the examples)
    drops the others *after* the partition, so each kept example is in the split it is in without
    ``keep``: a subset's training split never holds an example the whole set validates or tests on.
    ``shots`` keeps that many training examples per class (few-shot; val and test whole), drawn
    with the split seed, the same for every run seed. ``how`` is recorded in ``split_info``. ``spec`` is
    the backbone's :class:`ImageInput` (resolution possibly overridden by the target)."""
    import torch

    y = torch.as_tensor(labels, dtype=torch.long)
    pool_keys = keys_of_rows(images)  # raw pixels: the same for every source's preprocessing
    parts = split_indices(len(y), p.val_fraction, p.test_fraction, p.split_seed, keys=pool_keys)
    if keep is not None:
        parts = {k: v[np.asarray(keep)[v]] for k, v in parts.items()}
    if shots is not None:
        rng, train = np.random.default_rng(p.split_seed), parts["train"]
        labelled = np.asarray(labels)[train]
        parts["train"] = np.sort(np.concatenate([rng.permutation(train[labelled == c])[:shots]
                                                 for c in np.unique(labelled)]))
        how = {**how, "shots": shots}
    held_out = images if eval_images is None else eval_images
    held_out_keys = pool_keys if eval_images is None else keys_of_rows(eval_images)
    splits = {k: TensorSplit({"pixel_values": to_model_input((images if k == "train" else held_out)[v], spec),
                              "labels": y[v]}) for k, v in parts.items()}
    extra = {k: TensorSplit({"pixel_values": to_model_input(imgs, spec)}) for k, imgs in (domains or {}).items()}
    if eval_images is not None and eval_images is not images:
        # val and test in another domain: label-free model selection reads the training domain's val
        extra[SOURCE_VAL] = TensorSplit({"pixel_values": to_model_input(images[parts["val"]], spec),
                                         "labels": y[parts["val"]]})
    if unlabeled is not None:
        extra["unlabeled"] = TensorSplit({"pixel_values": to_model_input(unlabeled[parts["train"]], spec)})
        if target_shots:
            train = torch.as_tensor(parts["train"])
            shots = torch.cat([train[y[train] == c][:target_shots] for c in range(len(label_names))])
            extra["target_labeled"] = TensorSplit({"pixel_values": to_model_input(unlabeled[shots], spec),
                                                   "labels": y[shots]})
            how = {**how, "target_shots": target_shots}
    return TargetData(
        label_names=label_names, splits=splits, extra=extra,
        keys={k: (pool_keys if k == "train" else held_out_keys)[v] for k, v in parts.items()},
        split_info=describe_split(parts, seed=p.split_seed, val_fraction=p.val_fraction, test_fraction=p.test_fraction,
                                  source=source_desc, **how),
        preprocessing={"size": spec.size, "mean": list(spec.mean), "std": list(spec.std),
                       "interpolation": spec.interpolation, "grey_to_rgb": images.shape[1] == 1},
    )


Domain = Literal["original", "shifted"]


def shift_domain(images: torch.Tensor, seed: int) -> torch.Tensor:
    """The ``shifted`` domain: the same images colour-inverted with fixed-seed Gaussian noise
    (σ = 0.2), a covariate shift that keeps every label (like MNIST → MNIST-M)."""
    import torch

    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(10_007 + seed)) * 0.2
    return (1.0 - images + noise).clamp(0, 1)


class DigitsParams(SplitParams):
    image_size: int | None = Field(None, ge=8, le=1024, description="resize to this (default: the source's resolution)")
    domain: Domain = Field("original", description="domain of the labelled training split")
    eval_domain: Domain | None = Field(None, description="domain of val and test (default: `domain`)")
    unlabeled: Domain | None = Field(None, description="expose the training split's images in this domain, "
                                     "without labels, as unlabeled target-domain data (dann)")
    labels: Literal["digit", "parity"] = Field("digit", description="digit (10 classes) or parity (even/odd)")
    shots: int | None = Field(None, ge=1, le=1000, description="keep this many training images per class "
                              "(few-shot; val and test whole), the same for every run seed")
    classes: list[int] | None = Field(
        None, min_length=2, max_length=10, description="keep only these digits (labels 0..k−1 in this order), "
        "each image in the split it has in the whole set: pretrain on digits 0–4, transfer to all ten without a leak")
    target_shots: int | None = Field(None, ge=1, le=100, description="keep the labels of this many unlabeled-domain "
                                     "training examples per class (supervised DA: contrastive across domains, CCSA)")

    @model_validator(mode="after")
    def _classes_are_digits(self):
        if self.classes is not None and (len(set(self.classes)) != len(self.classes)
                                         or not all(0 <= c <= 9 for c in self.classes)):
            raise ValueError(f"classes: distinct digits from 0 to 9, got {self.classes}")
        return self

    @model_validator(mode="after")
    def _shots_need_a_domain(self):
        if self.target_shots and not self.unlabeled:
            raise ValueError("target_shots keeps labels of the unlabeled domain's examples: set unlabeled: too "
                             "(e.g. unlabeled: shifted)")
        return self


@TARGETS.register("sklearn", description="scikit-learn's bundled digits (1,797 8×8 greyscale images, 10 classes), offline")
class SklearnImages(Target):
    Params = DigitsParams
    tasks = frozenset({"image-classification"})
    default_task = "image-classification"
    names = ("digits",)

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        import torch
        from sklearn.datasets import load_digits

        p = DigitsParams.model_validate(params)
        d = load_digits()
        images = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        spec = replace(backbone.input_spec, size=p.image_size) if p.image_size else backbone.input_spec
        by_domain = {"original": images, "shifted": shift_domain(images, p.split_seed)}
        eval_domain = p.eval_domain or p.domain
        labels, names = (d.target % 2, ["even", "odd"]) if p.labels == "parity" else (d.target, [str(c) for c in d.target_names])
        keep = None
        if p.classes is not None:
            keep = np.isin(d.target, p.classes)
            if p.labels == "digit":
                index = {c: i for i, c in enumerate(p.classes)}
                labels, names = np.array([index.get(int(t), -1) for t in d.target]), [str(c) for c in p.classes]
        return image_target_data(by_domain[p.domain], labels, names, p, spec, "sklearn.datasets.load_digits",
                                 keep=keep, shots=p.shots, **({"classes": p.classes} if p.classes else {}),
                                 eval_images=by_domain[eval_domain],
                                 unlabeled=by_domain[p.unlabeled] if p.unlabeled else None,
                                 target_shots=p.target_shots if p.unlabeled else None,
                                 domain=p.domain, eval_domain=eval_domain, unlabeled_domain=p.unlabeled, label_kind=p.labels)


class TinyImageParams(SplitParams):
    n: int = Field(96, ge=12, le=10000)
    num_classes: int = Field(3, ge=2, le=20)
    unlabeled: Literal["shifted"] | None = Field(None, description="unlabeled shifted-domain examples in extra (dann)")
    eval_domain: Literal["original", "shifted"] = Field("original", description="domain of val and test")


@TARGETS.register("test", description="tiny synthetic targets for tests: tiny_images (class = bright quadrant), tiny_ner")
class TinyTargets(Target):
    Params = TinyImageParams
    tasks = frozenset({"image-classification", "token-classification"})
    names = ("tiny_images", "tiny_ner")

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        import torch

        if name == "tiny_ner":
            from harness.targets.tokens import tiny_ner

            return tiny_ner(params, backbone)
        p = TinyImageParams.model_validate(params)
        g = torch.Generator().manual_seed(p.split_seed)
        labels = torch.randint(0, p.num_classes, (p.n,), generator=g)
        images = torch.rand((p.n, 3, 12, 12), generator=g) * 0.3
        for i, c in enumerate(labels.tolist()):  # a learnable signal: class c lights one band
            images[i, :, (c * 12) // p.num_classes:((c + 1) * 12) // p.num_classes, :] += 0.6
        images = images.clamp(0, 1)
        return image_target_data(images, labels.numpy(), [f"c{c}" for c in range(p.num_classes)], p, backbone.input_spec,
                                 "synthetic", unlabeled=shift_domain(images, p.split_seed) if p.unlabeled else None,
                                 **({"eval_images": shift_domain(images, p.split_seed), "eval_domain": "shifted"}
                                    if p.eval_domain == "shifted" else {}))
