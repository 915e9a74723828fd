"""MNIST and USPS from files in their real on-disk formats (idx, LIBSVM bz2) written here, and the
MNIST → USPS shift as a pair: USPS scores the pair and lends its unlabeled training images."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.registry import TARGETS
from harness.targets.load import load_target
from harness.targets.vision.mnist import read_idx, read_usps
from tests.unit import test_vision_targets

tiny, _data_root = test_vision_targets.tiny, test_vision_targets._data_root


def idx_bytes(a: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return head + a.astype(np.uint8).tobytes()


def write_mnist(root: Path, n_train: int = 40, n_test: int = 20, gz: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, a in arrays.items():
        if gz:
            with gzip.open(raw / f"{name}.gz", "wb") as f:
                f.write(idx_bytes(a))
        else:
            (raw / name).write_bytes(idx_bytes(a))
    return arrays


def write_usps(root: Path, n_train: int = 30, n_test: int = 20, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("usps.bz2", n_train), ("usps.t.bz2", n_test)):
        values = rng.uniform(-1, 1, (n, 256)).round(6)
        labels = np.arange(n) % 10
        lines = [f"{y + 1} " + " ".join(f"{i + 1}:{v}" for i, v in enumerate(row)) for y, row in zip(labels, values, strict=True)]
        root.mkdir(parents=True, exist_ok=True)
        with bz2.open(root / name, "wt") as f:
            f.write("\n".join(lines) + "\n")
        out[name] = (values, labels)
    return out


def test_mnist_reads_the_idx_files_plain_or_gzipped(tmp_path, tiny):
    for gz in (False, True):
        root = tmp_path / ("gz" if gz else "plain")
        arrays = write_mnist(root, gz=gz)
        data = TARGETS.get("torchvision").load("mnist", {"data_dir": str(root), "val_fraction": 0.25},
                                               "image-classification", tiny)
        assert data.label_names == [str(d) for d in range(10)]
        assert (len(data.splits["train"]), len(data.splits["val"]), len(data.splits["test"])) == (30, 10, 20)
        assert torch.equal(data.splits["test"].images[:, 0], torch.as_tensor(arrays["t10k-images-idx3-ubyte"], dtype=torch.uint8))
        assert data.preprocessing["stored"] == [1, 28, 28] and data.split_info["test"] == "official"
        assert data.preprocessing["augment"]["hflip"] is False  # a mirrored digit is another glyph


def test_usps_reads_libsvm_lines_as_torchvision_maps_them(tmp_path, tiny):
    written = write_usps(tmp_path)
    x, y = read_usps(tmp_path / "usps.t.bz2")
    values, labels = written["usps.t.bz2"]
    assert x.shape == (20, 16, 16) and y.tolist() == labels.tolist()
    assert np.array_equal(x, ((values.reshape(-1, 16, 16).astype(np.float32) + 1) / 2 * 255).astype(np.uint8))
    data = TARGETS.get("torchvision").load("usps", {"data_dir": str(tmp_path)}, "image-classification", tiny)
    assert len(data.splits["test"]) == 20 and data.preprocessing["stored"] == [1, 16, 16]


def test_corrupt_files_are_named_with_what_is_wrong(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x00" * 10)
    with pytest.raises(HarnessError, match=r"bad: 10 bytes of data for dims \[5, 5, 5\]"):
        read_idx(tmp_path / "bad")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(HarnessError, match="not an idx file"):
        read_idx(tmp_path / "text")
    with bz2.open(tmp_path / "u.bz2", "wt") as f:
        f.write("1 1:0.5 2:0.1\n3 1:x\n")
    with pytest.raises(HarnessError, match=r"u.bz2:1: expected a label 1–10 and 256 values"):
        read_usps(tmp_path / "u.bz2")


def test_missing_files_say_where_and_how_to_get_them(tmp_path, tiny):
    with pytest.raises(HarnessError) as e:
        TARGETS.get("torchvision").load("usps", {"data_dir": str(tmp_path), "download": False}, "image-classification", tiny)
    msg = str(e.value)
    assert "USPS not found" in msg and "usps.bz2, usps.t.bz2" in msg and "torchvision.datasets.USPS(" in msg


def test_mnist_to_usps_is_a_pair_scored_on_usps_with_its_unlabeled_images(tmp_path, tiny):
    write_mnist(tmp_path)
    write_usps(tmp_path)
    usps = {"dataset": "torchvision/usps", "data_dir": str(tmp_path), "image_size": 28}
    data = load_target({"dataset": "torchvision/mnist", "data_dir": str(tmp_path), "task": "image-classification",
                        "image_size": 28, "eval_domain": usps, "unlabeled": usps}, tiny)
    alone = load_target({**usps, "task": "image-classification"}, tiny)
    assert data.split_info["fingerprint"]["test"] == alone.split_info["fingerprint"]["test"]
    assert len(data.extra["unlabeled"]) == len(alone.splits["train"])
    assert data.split_info["eval_domain"] == "torchvision/usps"
    batch = next(data.splits["test"].batches(4))
    assert batch["pixel_values"].shape[1:] == (3, 28, 28)  # USPS's 16×16 resized like MNIST's 28×28
