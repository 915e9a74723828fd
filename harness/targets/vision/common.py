"""What every file-backed image target shares: where data lives, its params, its pipeline, its splits."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from harness.config.schema import Params
from harness.errors import HarnessError
from harness.targets.base import (
    Split,
    TargetData,
    describe_split,
    keys_of_rows,
    split_indices,
)
from harness.targets.vision.decode import Decoder, decode_all, decode_key
from harness.targets.vision.pipeline import Pipeline
from harness.targets.vision.splits import ImageSplit, LoaderSplit

if TYPE_CHECKING:
    import torch

# the data root of the run being executed (its `ExecOptions.data_dir`, from `--data-dir`), set by
# `data_root_for` around the run: a value that travels with the run, not a variable the program sets
# in its own environment (which would outlive the run in a process that calls `main` or `execute` again)
_DATA_ROOT: ContextVar[Path | None] = ContextVar("harness_data_root", default=None)


@contextlib.contextmanager
def data_root_for(path: Path | None) -> Iterator[None]:
    """Within the block, :func:`data_root` defaults to ``path`` (``None``: as before the block)."""
    token = _DATA_ROOT.set(Path(path)) if path is not None else None
    try:
        yield
    finally:
        if token is not None:
            _DATA_ROOT.reset(token)


def data_root(data_dir: str | None) -> Path:
    """Where datasets live: the target's ``data_dir``, else the run's ``--data-dir``, else
    ``$HARNESS_DATA_DIR``, else ``$XDG_CACHE_HOME/harness/data`` (``~/.cache/harness/data``)."""
    from harness.cache import user_cache_home

    return Path(data_dir or _DATA_ROOT.get() or os.environ.get("HARNESS_DATA_DIR")
                or user_cache_home() / "harness" / "data").expanduser()


def owned_data_root() -> Path:
    """The data root the harness writes to (downloads, decoded-image caches): ``--data-dir``,
    ``$HARNESS_DATA_DIR`` or ``$XDG_CACHE_HOME/harness/data`` — chosen by whoever runs the harness, never
    by a suite file. A suite's ``data_dir:`` is read from; the harness writes there only when it
    lies inside this root once symlinks and ``..`` are resolved."""
    return data_root(None).resolve()


def inside_owned(path: Path) -> bool:
    try:
        path.resolve().relative_to(owned_data_root())
        return True
    except ValueError:
        return False


def guard_download(root: Path, what: str) -> None:
    """Refuse to download into a directory outside the owned data root (a suite's ``data_dir:``
    naming /etc, or a symlink leading out of the root)."""
    if not inside_owned(root):
        raise HarnessError(f"{what} is missing from {root}, and the harness downloads only into its data root "
                           f"{owned_data_root()} (--data-dir or $HARNESS_DATA_DIR), not into a directory a suite names "
                           "(after resolving symlinks and '..'): put the files there yourself, or point --data-dir at it")


class VisionParams(Params):
    data_dir: str | None = Field(None, description="dataset root (default: --data-dir, $HARNESS_DATA_DIR or "
                                    "$XDG_CACHE_HOME/harness/data, ~/.cache/harness/data)")
    image_size: int | None = Field(None, ge=8, le=1024, description="resize to this (default: the source's resolution)")
    augment: bool = Field(True, description="random crop with padding + horizontal flip on training batches")
    crop_padding: int = Field(4, ge=0, le=64, description="zero padding of the random crop (pixels, at stored resolution)")
    flip: bool = Field(True, description="random horizontal flip")
    resident: Literal["auto", "always", "never"] = Field("auto", description="keep decoded images on the GPU (auto: when they fit)")
    max_decoded_gb: float = Field(8.0, gt=0, description="above this decoded size, read through a DataLoader with workers")
    val_fraction: float = Field(0.1, ge=0.0, le=0.5, description="share of the training set held out for validation")
    split_seed: int = Field(0, ge=0, description="seed of the held-out split (fixed across run seeds)")


def ensure_files(root: Path, title: str, missing_now, download, allowed: bool, explain) -> None:
    """Make sure a dataset's files are in ``root``: when some are missing (``missing_now()`` lists
    them) and downloading is ``allowed``, ``download()`` them (only into the owned data root), then
    check again; otherwise, or if still missing, a :class:`HarnessError` from ``explain(missing, why)``."""
    missing = missing_now()
    if missing and allowed:
        guard_download(root, title)
        try:
            download()
        except Exception as e:  # noqa: BLE001 - URLError, socket, HTTP errors come in many types
            raise HarnessError(explain(missing, f"the download failed ({e.__class__.__name__}: {e})")) from e
        missing = missing_now()
    if missing:
        raise HarnessError(explain(missing, "download: false" if not allowed else "downloaded files incomplete"))


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
    import torch

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


def decoded_target(decode: Decoder, sizes: list[tuple[int, int]], labels: np.ndarray, groups: dict[str, np.ndarray],
                   label_names: list[str], p: VisionParams, pipe: Pipeline, source: str,
                   test_fraction: float, fingerprint: Any = None) -> TargetData:
    """Splits for file-backed images: decoded once in memory when that fits under
    ``max_decoded_gb`` (and cached under the data dir by ``fingerprint`` of the files), else
    :class:`LoaderSplit` (DataLoader with workers)."""
    import torch

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
            cache = owned_data_root() / ".decoded" / f"{key}.pt"  # never inside a suite-named data_dir
            if not inside_owned(cache.parent):
                raise HarnessError(f"{cache.parent} leads outside the data root {owned_data_root()} (a symlink?): "
                                   "the decoded-image cache is not written there")
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
