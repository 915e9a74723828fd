"""The on-device image pipeline: random crop and flip from the run's generator, resize, normalise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Pipeline:
    """uint8 batch ``(B, C, H, W)`` → normalised float batch at the source's resolution."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    channels: int = 3
    augment: bool = True
    crop_padding: int = 4
    flip: bool = True

    def describe(self) -> dict[str, Any]:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation,
                "augment": {"random_crop_padding": self.crop_padding, "hflip": self.flip} if self.augment else None}

    def crop_flip(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Random crop of the zero-padded image (same size) and random horizontal flip, per
        sample, in one gather; the random draws come from ``generator`` (CPU)."""
        import torch
        import torch.nn.functional as F

        b, c, h, w = x.shape
        p = self.crop_padding
        oy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        flip = torch.rand(b, generator=generator) < 0.5 if self.flip else torch.zeros(b, dtype=torch.bool)
        cols = torch.arange(w)
        cols = torch.where(flip[:, None], cols.flip(0)[None, :], cols[None, :]) + ox[:, None]
        rows = torch.arange(h)[None, :] + oy[:, None]
        dev = x.device
        padded = F.pad(x, (p, p, p, p)) if p else x
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        # non_blocking: a blocking host→GPU copy would wait for the previous step's kernels
        rows, cols = rows.to(dev, non_blocking=True), cols.to(dev, non_blocking=True)
        return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]

    def __call__(self, x: torch.Tensor, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        if train and self.augment:
            x = self.crop_flip(x, generator)
        x = x.float().div_(255.0)
        if x.shape[1] == 1 and self.channels == 3:  # greyscale target, RGB backbone: replicate the channel
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != self.channels:
            raise HarnessError(f"images have {x.shape[1]} channels; the source expects {self.channels}")
        if x.shape[-2:] != (self.size, self.size):
            mode = "bicubic" if self.interpolation == "bicubic" else "bilinear"
            down = x.shape[-1] > self.size
            x = F.interpolate(x, size=(self.size, self.size), mode=mode, align_corners=False, antialias=down)
            if mode == "bicubic":
                x = x.clamp_(0, 1)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1).to(x.device, non_blocking=True)
        std = torch.tensor(self.std).view(1, -1, 1, 1).to(x.device, non_blocking=True)
        return (x - mean).div_(std)
