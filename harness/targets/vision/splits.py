"""Image splits: decoded uint8 images held in one tensor (:class:`ImageSplit`) or decoded per batch by a
``DataLoader`` (:class:`LoaderSplit`); both hand uint8 batches to the same on-device pipeline."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from harness.targets.base import (
    Split,
    keys_of_rows,
)
from harness.targets.vision.decode import Decoder
from harness.targets.vision.pipeline import Pipeline

if TYPE_CHECKING:
    import torch

RESIDENT_FRACTION = 0.25  # resident: auto keeps a split on the GPU if it takes ≤ this share of free memory


def shuffled(n: int, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
    import torch

    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


class ImageSplit(Split):
    """Decoded uint8 images in one tensor; batches are built (and augmented) on ``device``.

    ``to_device`` moves the images there when they fit (``resident``); otherwise they stay
    in host memory and each uint8 batch is copied (4× less traffic than floats).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pipeline: Pipeline,
                 resident: str = "auto", device: torch.device | None = None):
        import torch

        assert images.dtype == torch.uint8 and images.ndim == 4, (images.dtype, images.shape)
        assert len(images) == len(labels)
        self.images, self.labels, self.pipeline, self.resident = images, labels, pipeline, resident
        self.device = device or images.device

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_resident(self) -> bool:
        return self.images.device == self.device

    def example_keys(self) -> np.ndarray:
        return keys_of_rows(self.images)

    def select(self, indices) -> ImageSplit:
        import torch

        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSplit(self.images[idx.to(self.images.device)], self.labels[idx.to(self.labels.device)],
                          self.pipeline, self.resident, self.device)

    def to_device(self, device: torch.device, num_workers: int = 0) -> ImageSplit:
        """This split computing on ``device``; its images resident there if they fit."""
        import torch

        device = torch.device(device)
        if self.images.device == device and self.device == device:
            return self  # already placed (placing twice must not evict)
        if device.type == "cpu":
            return ImageSplit(self.images.cpu(), self.labels.cpu(), self.pipeline, self.resident, device)
        keep = self.resident == "always"
        if self.resident == "auto":
            free, _total = torch.cuda.mem_get_info(device) if device.type == "cuda" else (float("inf"), 0)
            keep = self.images.numel() <= RESIDENT_FRACTION * free
        images = self.images.to(device) if keep else self.images.cpu()
        return ImageSplit(images, self.labels.to(device), self.pipeline, self.resident, device)

    def batches(self, batch_size, shuffle=False, generator=None, group_by_length=False) -> Iterator[dict]:
        order = shuffled(len(self), shuffle, generator)
        for i in range(0, len(self), batch_size):
            idx = order[i:i + batch_size]
            x = self.images[idx.to(self.images.device, non_blocking=True)].to(self.device, non_blocking=True)
            yield {"pixel_values": self.pipeline(x, train=shuffle, generator=generator),
                   "labels": self.labels[idx.to(self.labels.device, non_blocking=True)].to(self.device, non_blocking=True)}


class _Decoded:
    """A map-style dataset (``__len__``/``__getitem__``: all a ``DataLoader`` needs, so this module
    imports no torch until a batch is drawn)."""

    def __init__(self, decode: Decoder, indices: Sequence[int]):
        self.decode, self.indices = decode, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.decode(self.indices[i])


class LoaderSplit(Split):
    """Images decoded per batch by a ``DataLoader`` with workers (datasets too large to hold
    decoded); uint8 batches then go through the same on-device :class:`Pipeline`."""

    def __init__(self, decode: Decoder, indices: Sequence[int], labels: torch.Tensor, pipeline: Pipeline,
                 device: torch.device | None = None, num_workers: int = 0):
        import torch

        assert len(indices) == len(labels)
        self.decode, self.indices, self.labels, self.pipeline = decode, list(indices), labels, pipeline
        self.device, self.num_workers = device or torch.device("cpu"), num_workers

    def __len__(self):
        return len(self.indices)

    def example_keys(self) -> np.ndarray:
        return np.asarray([self.decode.raw_key(i) for i in self.indices], dtype=object)

    def select(self, indices) -> LoaderSplit:
        import torch

        idx = [int(i) for i in indices]
        return LoaderSplit(self.decode, [self.indices[i] for i in idx], self.labels[torch.as_tensor(idx, dtype=torch.long)],
                           self.pipeline, self.device, self.num_workers)

    def to_device(self, device: torch.device, num_workers: int = 0) -> LoaderSplit:
        import torch

        return LoaderSplit(self.decode, self.indices, self.labels, self.pipeline, torch.device(device), num_workers)

    def batches(self, batch_size, shuffle=False, generator=None, group_by_length=False) -> Iterator[dict]:
        import torch

        order = shuffled(len(self), shuffle, generator).tolist()
        loader = torch.utils.data.DataLoader(
            _Decoded(self.decode, [self.indices[i] for i in order]), batch_size=batch_size, shuffle=False,
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False, prefetch_factor=4 if self.num_workers else None)
        start = 0
        for x in loader:
            idx = torch.as_tensor(order[start:start + len(x)], dtype=torch.long)
            start += len(x)
            yield {"pixel_values": self.pipeline(x.to(self.device, non_blocking=True), train=shuffle, generator=generator),
                   "labels": self.labels[idx].to(self.device)}
