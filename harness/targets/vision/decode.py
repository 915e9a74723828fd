"""Decoding image files once: the per-image decoder, the decoded-tensor cache, a target built from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.digest import content_key, digest

if TYPE_CHECKING:
    import torch


class Decoder:
    """Index → uint8 ``(C, H, W)``: opens an image, converts it to RGB and, unless all images
    share one small size (kept native; resized on the device), resizes the shorter side to
    ``size / 0.875`` and centre-crops ``size``. Picklable, for DataLoader workers."""

    def __init__(self, open_image: Callable[[int], Any], size: int | None, interpolation: str = "bilinear"):
        self.open_image, self.size, self.interpolation = open_image, size, interpolation

    def raw_key(self, i: int) -> str:
        """A content key of image ``i``'s encoded bytes (no decoding)."""
        return content_key(self.open_image.raw(i))

    def __call__(self, i: int) -> torch.Tensor:
        import torch
        from PIL import Image

        img = self.open_image(i).convert("RGB")
        if self.size is not None:
            resample = Image.BICUBIC if self.interpolation == "bicubic" else Image.BILINEAR
            short = round(self.size / 0.875)
            w, h = img.size
            scale = short / min(w, h)
            img = img.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), resample)
            w, h = img.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            img = img.crop((left, top, left + self.size, top + self.size))
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def decode_all(decode: Decoder, n: int, cache: Path | None) -> torch.Tensor:
    """All ``n`` images as one uint8 tensor — read from ``cache`` when a previous run wrote it
    (decoding thousands of files costs minutes; every run of a suite needs the same tensor)."""
    import torch

    from harness import cache as store  # the harness's one cache: atomic, SHA-256 checked

    images, _ = store.load_or_compute(
        cache, lambda: torch.stack([decode(i) for i in range(n)]),
        valid=lambda x: isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and len(x) == n)
    return images


def decode_key(*parts: Any) -> str:
    """The key of a decoded dataset's cache entry (what was decoded, at which size, how)."""
    return digest(parts, 24)


def image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size
