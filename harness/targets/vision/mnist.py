"""MNIST and USPS in torchvision's on-disk layout, downloaded through torchvision on first use.

* ``torchvision/mnist``: ``<data dir>/MNIST/raw/`` with the four idx files (``train-images-idx3-ubyte``
  …, gzipped or not): 60,000 training and 10,000 test images, 28×28 greyscale.
* ``torchvision/usps``: ``<data dir>/usps.bz2`` and ``usps.t.bz2`` (LIBSVM lines ``label
  index:value …``, labels 1–10, values in [−1, 1]): 7,291 training and 2,007 test images, 16×16.

Both keep their official test sets; both are digits 0–9 under the same label names, so one may be
the other's ``eval_domain:`` or ``unlabeled:`` (MNIST → USPS, the classic digit shift).
"""

from __future__ import annotations

import bz2
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch

DIGIT_NAMES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class DigitSet:
    title: str
    folder: str  # under the data dir
    files: tuple[str, ...]  # train images, train labels, test images, test labels (USPS: train, test)
    dataset_class: str  # the torchvision.datasets class that downloads the same files


SETS = {
    "mnist": DigitSet("MNIST", "MNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), "MNIST"),
    "usps": DigitSet("USPS", ".", ("usps.bz2", "usps.t.bz2"), "USPS"),
}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format: big-endian magic ``0 0 0x08 ndim``, the dims, then uint8 data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise HarnessError(f"{path}: not an idx file of unsigned bytes (magic {data[:4].hex() or 'missing'})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise HarnessError(f"{path}: {body.size} bytes of data for dims {dims} (truncated or corrupt)")
    return body.reshape(dims)


def read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A USPS LIBSVM file → (uint8 images ``(N, 16, 16)``, labels 0–9), as torchvision maps them."""
    images, labels = [], []
    with bz2.open(path, "rt") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                label = int(float(parts[0])) - 1
                values = [float(p.split(":", 1)[1]) for p in parts[1:]]
            except (ValueError, IndexError) as e:
                raise HarnessError(f"{path}:{line_no}: not a LIBSVM line 'label index:value …' ({e})") from e
            if len(values) != 256 or not 0 <= label <= 9:
                raise HarnessError(f"{path}:{line_no}: expected a label 1–10 and 256 values, got label "
                                   f"{label + 1} and {len(values)} values")
            images.append(values)
            labels.append(label)
    x = ((np.asarray(images, dtype=np.float32).reshape(-1, 16, 16) + 1) / 2 * 255).astype(np.uint8)
    return x, np.asarray(labels, dtype=np.int64)


def present(root: Path, s: DigitSet) -> tuple[list[Path], list[str]]:
    """The files found (plain or ``.gz``), and the names missing."""
    found, missing = [], []
    for name in s.files:
        plain = root / s.folder / name
        zipped = plain.with_name(name + ".gz")
        if plain.is_file():
            found.append(plain)
        elif zipped.is_file() and not name.endswith(".bz2"):
            found.append(zipped)
        else:
            missing.append(name)
    return found, missing


def download(root: Path, s: DigitSet) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, s.dataset_class)
    for train in (True, False):
        cls(str(root), train=train, download=True)


def load_digit_set(root: Path, name: str, allow_download: bool):
    """(train images, train labels, test images, test labels, label names): uint8 ``(N, 1, H, W)``."""
    s = SETS[name]
    from harness.targets.vision.common import ensure_files

    ensure_files(root, s.title, lambda: present(root, s)[1], lambda: download(root, s), allow_download,
                 lambda missing, why: _help(root, s, missing, why))
    found, _ = present(root, s)
    if name == "usps":
        (x, y), (tx, ty) = read_usps(found[0]), read_usps(found[1])
    else:
        x, y, tx, ty = (read_idx(f) for f in found)
        if len(x) != len(y) or len(tx) != len(ty):
            raise HarnessError(f"{root / s.folder}: {len(x)} training images for {len(y)} labels, "
                               f"{len(tx)} test images for {len(ty)} labels")
    return images(x), np.asarray(y, dtype=np.int64), images(tx), np.asarray(ty, dtype=np.int64), DIGIT_NAMES


def images(a: np.ndarray) -> torch.Tensor:
    """``(N, H, W)`` uint8 → ``(N, 1, H, W)``, a copy (the idx bytes are read-only)."""
    import torch

    return torch.from_numpy(np.array(a, dtype=np.uint8)).unsqueeze(1)


def _help(root: Path, s: DigitSet, missing: list[str], why: str) -> str:
    return (f"{s.title} not found: looked in {root / s.folder} for {', '.join(missing)} ({why}). To get it, on a "
            f"machine with a network run: python -c \"import torchvision; [torchvision.datasets.{s.dataset_class}"
            f"('{root}', train=t, download=True) for t in (True, False)]\" — then point the harness at that folder "
            "with --data-dir, $HARNESS_DATA_DIR or `data_dir:` in the target.")
