"""The ``torchvision/`` namespace: CIFAR-10 / CIFAR-100 in their own on-disk format (python pickles), and
MNIST / USPS (:mod:`harness.targets.vision.mnist`), downloaded on first use."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from harness.errors import HarnessError
from harness.registry import TARGETS
from harness.targets.base import (
    Target,
    TargetData,
)
from harness.targets.vision.common import (
    VisionParams,
    data_root,
    ensure_files,
    make_target_data,
    pipeline_for,
)
from harness.targets.vision.mnist import SETS as DIGIT_SETS
from harness.targets.vision.mnist import load_digit_set

if TYPE_CHECKING:
    import torch


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


class BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds — dicts, lists, strings, numbers and numpy arrays — and
    refuses any other global: a tampered batch that names a function (``os.system``,
    ``builtins.eval``) is an error before anything is called."""

    def find_class(self, module: str, name: str):
        allowed = CIFAR_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refuses {module}.{name}: a CIFAR batch holds only dicts, lists, "
                                         "strings, numbers and numpy arrays")
        return allowed()


def _numpy_reconstruct():
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


def _numpy_scalar():
    core = getattr(np, "_core", None) or np.core
    return core.multiarray.scalar


CIFAR_GLOBALS = {  # (module, name) as the files name them → the object (numpy 1 and 2 spellings)
    **{(m, "_reconstruct"): _numpy_reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _numpy_scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = BatchUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise HarnessError(f"{path}: not a CIFAR batch ({e.__class__.__name__}: {e})") from e
    if not isinstance(d, dict):
        raise HarnessError(f"{path}: not a CIFAR batch (it holds a {type(d).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _read_batches(folder: Path, files: Sequence[str], label_key: str) -> tuple[torch.Tensor, np.ndarray]:
    import torch

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
    ensure_files(root, layout.title, lambda: [f for f in cifar_files(root, layout) if not f.is_file()],
                 lambda: download_cifar(root, layout), download, lambda missing, why: _cifar_help(root, layout, missing, why))
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


@TARGETS.register("torchvision", description="CIFAR-10 / CIFAR-100, MNIST, USPS (downloaded into --data-dir on first "
                  "use; official test sets)")
class TorchvisionImages(Target):
    Params = CifarParams
    tasks = frozenset({"image-classification"})
    default_task = "image-classification"
    names = (*CIFAR, *DIGIT_SETS)

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        p = CifarParams.model_validate(params)
        root = data_root(p.data_dir)
        if name in DIGIT_SETS:
            if "flip" not in p.model_fields_set:  # a mirrored digit is another glyph (or none)
                p = p.model_copy(update={"flip": False})
            x, y, tx, ty, names = load_digit_set(root, name, p.download)
            s = DIGIT_SETS[name]
            return make_target_data(x, y, tx, ty, names, p, pipeline_for(backbone, p), f"{s.title} ({root / s.folder})")
        layout = CIFAR[name]
        x, y, tx, ty, names = load_cifar(root, layout, p.download)
        return make_target_data(x, y, tx, ty, names, p, pipeline_for(backbone, p), f"{layout.title} ({root / layout.folder})")
