"""Image targets at real scale: CIFAR-10/100, ImageFolder trees, Hugging Face image datasets.

The fast data path: every image is decoded **once** into a uint8 tensor (CIFAR: 150 MB for
50,000 images). At run time the split moves to the training device when it fits
(``resident: auto``) and each batch is augmented there — random crop with zero padding and a
horizontal flip, drawn from the run's seeded generator — then converted to float, resized to
the source's resolution and normalised with the source's mean/std. Datasets whose decoded
size exceeds ``max_decoded_gb`` are read through a ``DataLoader`` with workers instead
(:class:`LoaderSplit`), which decodes per batch and hands uint8 batches to the same on-device
pipeline, so both paths produce the same pixels.

Augmentation applies to training passes only (``batches(shuffle=True)``); evaluation and
feature extraction (frozen-feature cache) see the un-augmented images.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from harness.config.errors import HarnessError
from harness.config.schema import Params
from harness.registry import TARGETS
from harness.targets.base import (
    Split,
    Target,
    TargetData,
    content_key,
    describe_split,
    keys_of_rows,
    split_indices,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
RESIDENT_FRACTION = 0.25  # resident: auto keeps a split on the GPU if it takes ≤ this share of free memory


def data_root(data_dir: str | None) -> Path:
    """Where datasets live: the target's ``data_dir``, else ``--data-dir``/``$HARNESS_DATA_DIR``,
    else ``~/.cache/harness/data``."""
    return Path(data_dir or os.environ.get("HARNESS_DATA_DIR") or Path.home() / ".cache" / "harness" / "data").expanduser()


# --------------------------------------------------------------------------- the pipeline


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


def shuffled(n: int, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


# --------------------------------------------------------------------------- the splits


class ImageSplit(Split):
    """Decoded uint8 images in one tensor; batches are built (and augmented) on ``device``.

    ``to_device`` moves the images there when they fit (``resident``); otherwise they stay
    in host memory and each uint8 batch is copied (4× less traffic than floats).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pipeline: Pipeline,
                 resident: str = "auto", device: torch.device | None = None):
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
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSplit(self.images[idx.to(self.images.device)], self.labels[idx.to(self.labels.device)],
                          self.pipeline, self.resident, self.device)

    def to_device(self, device: torch.device, num_workers: int = 0) -> ImageSplit:
        """This split computing on ``device``; its images resident there if they fit."""
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


class _Decoded(torch.utils.data.Dataset):
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
        assert len(indices) == len(labels)
        self.decode, self.indices, self.labels, self.pipeline = decode, list(indices), labels, pipeline
        self.device, self.num_workers = device or torch.device("cpu"), num_workers

    def __len__(self):
        return len(self.indices)

    def example_keys(self) -> np.ndarray:
        return np.asarray([self.decode.raw_key(i) for i in self.indices], dtype=object)

    def select(self, indices) -> LoaderSplit:
        idx = [int(i) for i in indices]
        return LoaderSplit(self.decode, [self.indices[i] for i in idx], self.labels[torch.as_tensor(idx, dtype=torch.long)],
                           self.pipeline, self.device, self.num_workers)

    def to_device(self, device: torch.device, num_workers: int = 0) -> LoaderSplit:
        return LoaderSplit(self.decode, self.indices, self.labels, self.pipeline, torch.device(device), num_workers)

    def batches(self, batch_size, shuffle=False, generator=None, group_by_length=False) -> Iterator[dict]:
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


# --------------------------------------------------------------------------- params


class VisionParams(Params):
    data_dir: str | None = Field(None, description="dataset root (default: --data-dir, $HARNESS_DATA_DIR or ~/.cache/harness/data)")
    image_size: int | None = Field(None, ge=8, le=1024, description="resize to this (default: the source's resolution)")
    augment: bool = Field(True, description="random crop with padding + horizontal flip on training batches")
    crop_padding: int = Field(4, ge=0, le=64, description="zero padding of the random crop (pixels, at stored resolution)")
    flip: bool = Field(True, description="random horizontal flip")
    resident: Literal["auto", "always", "never"] = Field("auto", description="keep decoded images on the GPU (auto: when they fit)")
    max_decoded_gb: float = Field(8.0, gt=0, description="above this decoded size, read through a DataLoader with workers")
    val_fraction: float = Field(0.1, ge=0.0, le=0.5, description="share of the training set held out for validation")
    split_seed: int = Field(0, ge=0, description="seed of the held-out split (fixed across run seeds)")


def pipeline_for(backbone, p: VisionParams) -> Pipeline:
    spec = backbone.input_spec
    if spec.channels not in (1, 3):
        raise HarnessError(f"the source expects {spec.channels}-channel input; image targets provide RGB or greyscale")
    return Pipeline(size=p.image_size or spec.size, mean=tuple(spec.mean), std=tuple(spec.std),
                    interpolation=spec.interpolation, channels=spec.channels, augment=p.augment,
                    crop_padding=p.crop_padding, flip=p.flip)


def make_target_data(images: torch.Tensor, labels: np.ndarray, test_images: torch.Tensor | None,
                     test_labels: np.ndarray | None, label_names: list[str], p: VisionParams, pipe: Pipeline,
                     source: str, test_fraction: float = 0.0) -> TargetData:
    """Splits of decoded uint8 images: train/val from ``images`` (val by ``val_fraction``), test
    from ``test_images`` when given, else carved out of ``images`` by ``test_fraction``."""
    eval_pipe = replace(pipe, augment=False)
    y = torch.as_tensor(labels, dtype=torch.long)
    pool_keys = keys_of_rows(images)
    parts = split_indices(len(y), p.val_fraction, test_fraction if test_images is None else 0.0, p.split_seed,
                          keys=pool_keys)
    keys = {k: pool_keys[v] for k, v in parts.items()}
    splits: dict[str, Split] = {}
    for k in ("train", "val", "test"):
        if k == "test" and test_images is not None:
            continue
        idx = torch.as_tensor(parts[k], dtype=torch.long)
        splits[k] = ImageSplit(images[idx], y[idx], pipe if k == "train" else eval_pipe, p.resident)
    origins = {}
    if test_images is not None:
        parts["test"] = np.arange(len(test_images))
        splits["test"] = ImageSplit(test_images, torch.as_tensor(test_labels, dtype=torch.long), eval_pipe, p.resident)
        keys["test"] = keys_of_rows(test_images)
        origins = {"train": "train", "val": "train", "test": "test"}  # the dataset's own test set
    return TargetData(label_names=label_names, splits=splits, keys=keys, origins=origins,
                      split_info=describe_split(parts, seed=p.split_seed, val_fraction=p.val_fraction,
                                                test="official" if test_images is not None else test_fraction,
                                                source=source),
                      preprocessing={**pipe.describe(), "stored": list(images.shape[1:]), "resident": p.resident})


# --------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class CifarLayout:
    title: str
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str
    dataset_class: str  # the torchvision.datasets class of the same files
    url: str
    md5: str


CIFAR = {
    "cifar10": CifarLayout("CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                           "batches.meta", "labels", "label_names", "CIFAR10",
                           "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": CifarLayout("CIFAR-100", "cifar-100-python", ("train",), "test", "meta", "fine_labels",
                            "fine_label_names", "CIFAR100",
                            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")  # noqa: S301 - CIFAR's own format is a python pickle
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _read_batches(folder: Path, files: Sequence[str], label_key: str) -> tuple[torch.Tensor, np.ndarray]:
    xs, ys = [], []
    for f in files:
        d = _unpickle(folder / f)
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(xs)), np.concatenate(ys)


def cifar_files(root: Path, layout: CifarLayout) -> list[Path]:
    folder = root / layout.folder
    return [folder / f for f in (*layout.train, layout.test, layout.meta)]


def download_cifar(root: Path, layout: CifarLayout) -> None:
    """Fetch and unpack the archive (MD5-checked) into ``root``."""
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(layout.url, str(root), md5=layout.md5)


def load_cifar(root: Path, layout: CifarLayout, download: bool):
    """(train images, train labels, test images, test labels, label names), all uint8/int64."""
    missing = [f for f in cifar_files(root, layout) if not f.is_file()]
    if missing and download:
        try:
            download_cifar(root, layout)
        except Exception as e:  # noqa: BLE001 - URLError, socket, HTTP errors come in many types
            raise HarnessError(_cifar_help(root, layout, missing, f"the download failed ({e.__class__.__name__}: {e})")) from e
        missing = [f for f in cifar_files(root, layout) if not f.is_file()]
    if missing:
        raise HarnessError(_cifar_help(root, layout, missing, "download: false" if not download else "downloaded files incomplete"))
    folder = root / layout.folder
    x, y = _read_batches(folder, layout.train, layout.label_key)
    tx, ty = _read_batches(folder, (layout.test,), layout.label_key)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(folder / layout.meta)[layout.names_key]]
    return x, y, tx, ty, names


def _cifar_help(root: Path, layout: CifarLayout, missing: list[Path], why: str) -> str:
    return (f"{layout.title} not found: looked in {root / layout.folder} for {', '.join(p.name for p in missing)} ({why}). "
            f"To get it, on a machine with a network run: python -c \"import torchvision; "
            f"torchvision.datasets.{layout.dataset_class}('{root}', download=True)\" — or download {layout.url} and "
            f"extract it into {root} — then point the harness at that folder with --data-dir, $HARNESS_DATA_DIR "
            "or `data_dir:` in the target.")


class CifarParams(VisionParams):
    download: bool = Field(True, description="download into the data dir on first use when it is missing")


@TARGETS.register("torchvision", description="CIFAR-10 / CIFAR-100 (downloaded into --data-dir on first use; official test set)")
class TorchvisionImages(Target):
    Params = CifarParams
    tasks = frozenset({"image-classification"})
    default_task = "image-classification"
    names = tuple(CIFAR)

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        p = CifarParams.model_validate(params)
        layout = CIFAR[name]
        root = data_root(p.data_dir)
        x, y, tx, ty, names = load_cifar(root, layout, p.download)
        return make_target_data(x, y, tx, ty, names, p, pipeline_for(backbone, p), f"{layout.title} ({root / layout.folder})")


# --------------------------------------------------------------------------- files: ImageFolder, HF


def decode_all(decode: Decoder, n: int, cache: Path | None) -> torch.Tensor:
    """All ``n`` images as one uint8 tensor — read from ``cache`` when a previous run wrote it
    (decoding thousands of files costs minutes; every run of a suite needs the same tensor)."""
    import io

    from harness.records import atomic_write_bytes

    if cache is not None and cache.is_file():
        try:
            images = torch.load(cache, map_location="cpu", weights_only=True)
            if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and len(images) == n:
                return images
        except Exception:  # noqa: BLE001 - an unreadable cache file is rebuilt, never trusted
            pass
    images = torch.stack([decode(i) for i in range(n)])
    if cache is not None:
        buf = io.BytesIO()
        torch.save(images, buf)
        atomic_write_bytes(cache, buf.getvalue())
    return images


def decode_key(*parts: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def decoded_target(decode: Decoder, sizes: list[tuple[int, int]], labels: np.ndarray, groups: dict[str, np.ndarray],
                   label_names: list[str], p: VisionParams, pipe: Pipeline, source: str,
                   test_fraction: float, fingerprint: Any = None) -> TargetData:
    """Splits for file-backed images: decoded once in memory when that fits under
    ``max_decoded_gb`` (and cached under the data dir by ``fingerprint`` of the files), else
    :class:`LoaderSplit` (DataLoader with workers)."""
    store = pipe.size
    uniform = len(set(sizes)) == 1 and max(sizes[0]) <= store
    decode = Decoder(decode.open_image, None if uniform else store, pipe.interpolation)
    h, w = (sizes[0][1], sizes[0][0]) if uniform else (store, store)
    in_memory = len(labels) * 3 * h * w <= p.max_decoded_gb * 2**30
    eval_pipe = replace(pipe, augment=False)
    y = torch.as_tensor(labels, dtype=torch.long)

    raw_keys = np.asarray([decode.raw_key(i) for i in range(len(labels))], dtype=object)
    if "train" in groups and "test" in groups:  # the dataset's own split; val carved out of train
        train_idx = groups["train"]
        sub = split_indices(len(train_idx), p.val_fraction, 0.0, p.split_seed, keys=raw_keys[train_idx])
        parts = {"train": train_idx[sub["train"]], "val": train_idx[sub["val"]], "test": groups["test"]}
        how = {"test": "dataset's own"}
        origins = {"train": "train", "val": "train", "test": "test"}
    else:
        parts = split_indices(len(labels), p.val_fraction, test_fraction, p.split_seed, keys=raw_keys)
        how = {"test_fraction": test_fraction}
        origins = {}
    splits: dict[str, Split] = {}
    if in_memory:
        cache = None
        if fingerprint is not None:
            key = decode_key(fingerprint, decode.size, decode.interpolation, len(labels))
            cache = data_root(p.data_dir) / ".decoded" / f"{key}.pt"
        images = decode_all(decode, len(labels), cache)
    for k, idx in parts.items():
        pp = pipe if k == "train" else eval_pipe
        t = torch.as_tensor(idx, dtype=torch.long)
        splits[k] = ImageSplit(images[t], y[t], pp, p.resident) if in_memory else LoaderSplit(decode, list(idx), y[t], pp)
    return TargetData(label_names=label_names, splits=splits, keys={k: raw_keys[v] for k, v in parts.items()},
                      origins=origins,
                      split_info=describe_split(parts, seed=p.split_seed, val_fraction=p.val_fraction, source=source, **how),
                      preprocessing={**pipe.describe(), "stored": [3, h, w], "resident": p.resident,
                                     "path": "decoded" if in_memory else "dataloader"})


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


class _OpenFile:
    def __init__(self, files: Sequence[str]):
        self.files = list(files)

    def __call__(self, i: int):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            im.load()
            return im

    def raw(self, i: int) -> bytes:
        with open(self.files[i], "rb") as f:
            return f.read()


def scan_folder(root: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(class names, files, labels) of ``root/<class>/<image>`` (sorted, like torchvision)."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for c, name in enumerate(classes):
        for dirpath, _dirs, names in sorted(os.walk(root / name, followlinks=True)):
            for f in sorted(names):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(dirpath, f))
                    labels.append(c)
    return classes, files, np.asarray(labels, dtype=np.int64)


class FolderParams(VisionParams):
    test_fraction: float = Field(0.2, gt=0.0, le=0.5, description="held out for test when the tree has no train/ and test/ (or val/)")


@TARGETS.register("imagefolder", description="an ImageFolder tree: imagefolder/<path> with <class>/<image> (or train/ + test|val/)")
class ImageFolderTarget(Target):
    Params = FolderParams
    tasks = frozenset({"image-classification"})
    default_task = "image-classification"

    name_hint = "imagefolder/<path to the tree>"

    def resolve(self, name: str, p: FolderParams) -> Path:
        candidates = [Path(name).expanduser()]
        if not Path(name).is_absolute():
            candidates.append(data_root(p.data_dir) / name)
        for c in candidates:
            if c.is_dir():
                return c
        raise HarnessError(f"imagefolder: no directory {name!r} (looked at {', '.join(str(c) for c in candidates)})")

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        p = FolderParams.model_validate(params)
        root = self.resolve(name, p)
        test_dir = next((root / d for d in ("test", "val", "validation") if (root / d).is_dir()), None)
        if (root / "train").is_dir() and test_dir is not None:
            classes, files, labels = scan_folder(root / "train")
            tclasses, tfiles, tlabels = scan_folder(test_dir)
            if tclasses != classes:
                raise HarnessError(f"imagefolder {root}: classes of train/ and {test_dir.name}/ differ: "
                                   f"{sorted(set(classes) ^ set(tclasses))}")
            groups = {"train": np.arange(len(files)), "test": np.arange(len(files), len(files) + len(tfiles))}
            files, labels = files + tfiles, np.concatenate([labels, tlabels])
        else:
            classes, files, labels = scan_folder(root)
            groups = {}
        if len(classes) < 2 or not files:
            raise HarnessError(f"imagefolder {root}: need ≥ 2 class folders with images ({', '.join(IMAGE_EXTENSIONS)}); "
                               f"found {len(classes)} class(es), {len(files)} image(s)")
        sizes = [_image_size(f) for f in files]
        stats = [(f, st.st_size, st.st_mtime_ns) for f in files for st in [os.stat(f)]]
        return decoded_target(Decoder(_OpenFile(files), None), sizes, labels, groups, classes, p,
                              pipeline_for(backbone, p), f"imagefolder {root}", p.test_fraction,
                              fingerprint=["imagefolder", str(root.resolve()), stats])


class HFImageParams(FolderParams):
    config: str | None = Field(None, description="dataset configuration name")
    revision: str | None = Field(None, description="dataset revision (commit, tag or branch)")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(None, description="for builders such as parquet/imagefolder")
    image_column: str | None = Field(None, description="default: image, img or pixel_values — the first present")
    label_column: str | None = Field(None, description="default: label, labels, fine_label — the first present")
    train_split: str = Field("train", description="split to train (and validate) on")
    test_split: str | None = Field(None, description="default: test, else validation; none: carve out test_fraction")


class _OpenHF:
    def __init__(self, ds, column: str):
        self.ds, self.column = ds, column

    def __call__(self, i: int):
        import io

        from PIL import Image

        v = self.ds[int(i)][self.column]
        if isinstance(v, dict):  # Image(decode=False): {"bytes": …, "path": …}
            return Image.open(io.BytesIO(v["bytes"])) if v.get("bytes") else Image.open(v["path"])
        return v

    def raw(self, i: int) -> bytes:
        v = self.ds[int(i)][self.column]
        if isinstance(v, dict):
            if v.get("bytes"):
                return bytes(v["bytes"])
            with open(v["path"], "rb") as f:
                return f.read()
        return np.asarray(v).tobytes()


def _pick(columns: Sequence[str], wanted: str | None, defaults: tuple[str, ...], what: str, ref: str) -> str:
    for c in ([wanted] if wanted else defaults):
        if c in columns:
            return c
    raise HarnessError(f"{ref}: no {what} column {wanted or ' / '.join(defaults)}; columns: {', '.join(columns)}. "
                       f"Set `{what}_column:` in the target.")


@TARGETS.register("hfimages", description="a Hugging Face image dataset with image/label columns: hfimages/<dataset id>")
class HFImages(Target):
    Params = HFImageParams
    tasks = frozenset({"image-classification"})
    default_task = "image-classification"

    name_hint = "hfimages/<owner>/<name> (or a builder: parquet, imagefolder)"

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        try:
            import datasets
        except ImportError as e:
            raise HarnessError("hfimages targets need the `datasets` package: pip install 'harness[vision]'") from e
        p = HFImageParams.model_validate(params)
        ref = f"hfimages/{name}"
        try:
            dsd = datasets.load_dataset(name, p.config, data_files=p.data_files, revision=p.revision,
                                        cache_dir=str(data_root(p.data_dir) / "hf"))
        except Exception as e:  # noqa: BLE001 - Hub/network/format errors come in many types
            raise HarnessError(f"cannot load {ref} ({e.__class__.__name__}: {str(e)[:300]}). With no network, load it once "
                               "on a machine with one (same --data-dir), then set HF_DATASETS_OFFLINE=1.") from e
        if p.train_split not in dsd:
            raise HarnessError(f"{ref}: no split '{p.train_split}'; it has {', '.join(dsd)}")
        test_name = p.test_split or next((s for s in ("test", "validation") if s in dsd and s != p.train_split), None)
        if p.test_split and p.test_split not in dsd:
            raise HarnessError(f"{ref}: no split '{p.test_split}'; it has {', '.join(dsd)}")
        parts = [dsd[p.train_split]] + ([dsd[test_name]] if test_name else [])
        ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        cols = ds.column_names
        img_col = _pick(cols, p.image_column, ("image", "img", "pixel_values"), "image", ref)
        lab_col = _pick(cols, p.label_column, ("label", "labels", "fine_label"), "label", ref)
        feat = ds.features[lab_col]
        raw = list(ds[lab_col])
        if isinstance(feat, datasets.ClassLabel):
            names, labels = list(feat.names), np.asarray(raw, dtype=np.int64)
        else:
            names = sorted({str(v) for v in raw})
            labels = np.asarray([names.index(str(v)) for v in raw], dtype=np.int64)
        if isinstance(ds.features[img_col], datasets.Image):
            ds = ds.cast_column(img_col, datasets.Image(decode=False))
        opener = _OpenHF(ds.select_columns([img_col]), img_col)
        sizes = []
        for i in range(len(ds)):
            with opener(i) as im:
                sizes.append(im.size)
        prints = [getattr(d, "_fingerprint", None) for d in parts]  # content hashes kept by `datasets`
        n_train = len(parts[0])
        groups = {"train": np.arange(n_train), "test": np.arange(n_train, len(ds))} if test_name else {}
        return decoded_target(Decoder(opener, None), sizes, labels, groups, names, p, pipeline_for(backbone, p),
                              f"{ref} ({p.train_split}" + (f" + {test_name})" if test_name else ")"), p.test_fraction,
                              fingerprint=None if None in prints else ["hfimages", name, prints])
