"""Vision targets without a network: CIFAR from files in CIFAR's own on-disk format (python-2
pickles), ImageFolder trees, Hugging Face image sets from parquet, the on-device pipeline."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.registry import SOURCES, TARGETS
from harness.targets.vision import ImageSplit, LoaderSplit, Pipeline

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as python-2 ``str`` opcodes: what CIFAR's files (cPickle, python 2) hold."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2str(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2str


def py2_pickle(obj, path: Path) -> None:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # the real files name numpy's old module path
    path.write_bytes(buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def write_cifar10(root: Path, per_batch: int = 12, seed: int = 0) -> dict:
    """``root/cifar-10-batches-py`` with data_batch_1..5, test_batch, batches.meta; returns the arrays."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        py2_pickle({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                    b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}, folder / name)
        out[name] = (data, labels)
    py2_pickle({b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": per_batch,
                b"num_vis": 3072}, folder / "batches.meta")
    return out


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    """The default data dir (decoded-image cache) inside the test's tmp dir, never ~/.cache."""
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "default-data-dir"))


@pytest.fixture(scope="module")
def tiny():
    return SOURCES.get("test").build("tiny_cnn", {}, pretrained=True)


def test_cifar10_reads_the_real_on_disk_format(tmp_path, tiny):
    arrays = write_cifar10(tmp_path)
    data = TARGETS.get("torchvision").load("cifar10", {"data_dir": str(tmp_path), "val_fraction": 0.2},
                                          "image-classification", tiny)
    assert data.label_names == CIFAR10_NAMES
    sizes = {k: len(s) for k, s in data.splits.items()}
    assert sizes == {"train": 48, "val": 12, "test": 12}  # 5 × 12 train images, val carved out; official test
    test = data.splits["test"]
    # the test split is the test_batch, pixel for pixel, in CIFAR's CHW row-major layout
    expected = torch.from_numpy(arrays["test_batch"][0].reshape(-1, 3, 32, 32))
    assert torch.equal(test.images, expected)
    assert test.labels.tolist() == arrays["test_batch"][1]
    # train + val hold exactly the five training batches
    all_train = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    got = torch.cat([data.splits["train"].images, data.splits["val"].images])
    assert sorted(map(bytes, got.numpy())) == sorted(map(bytes, all_train))
    assert data.split_info["sizes"] == sizes and data.split_info["test"] == "official"


def test_cifar_found_through_harness_data_dir(tmp_path, tiny, monkeypatch):
    write_cifar10(tmp_path / "elsewhere")
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "elsewhere"))
    data = TARGETS.get("torchvision").load("cifar10", {"download": False}, "image-classification", tiny)
    assert len(data.splits["test"]) == 12


def test_missing_cifar_says_where_it_looked_and_how_to_download(tmp_path, tiny):
    with pytest.raises(HarnessError) as e:
        TARGETS.get("torchvision").load("cifar100", {"data_dir": str(tmp_path), "download": False},
                                        "image-classification", tiny)
    msg = str(e.value)
    assert str(tmp_path / "cifar-100-python") in msg
    assert "torchvision.datasets.CIFAR100" in msg and "download=True" in msg and "--data-dir" in msg
    assert "cifar-100-python.tar.gz" in msg


def test_failed_download_is_reported_with_the_fix(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))  # the harness downloads only into its data root
    import harness.targets.vision.cifar as vision

    def offline(root, layout):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(vision, "download_cifar", offline)
    with pytest.raises(HarnessError, match=r"download failed \(OSError: .*name resolution\).*download=True"):
        TARGETS.get("torchvision").load("cifar10", {"data_dir": str(tmp_path)}, "image-classification", tiny)


def test_downloads_once_then_reads_offline(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))  # the harness downloads only into its data root
    import harness.targets.vision.cifar as vision

    calls = []

    def fake_download(root, layout):  # stands in for the network: unpacks the archive's files
        calls.append((root, layout.url))
        write_cifar10(root)

    monkeypatch.setattr(vision, "download_cifar", fake_download)
    for _ in range(2):
        data = TARGETS.get("torchvision").load("cifar10", {"data_dir": str(tmp_path)}, "image-classification", tiny)
        assert len(data.splits["test"]) == 12
    assert calls == [(tmp_path, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")]


def test_pipeline_crop_flip_matches_a_reference():
    pipe = Pipeline(size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_padding=2)
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    got = pipe.crop_flip(x, g1)
    oy = torch.randint(0, 5, (6,), generator=g2)
    ox = torch.randint(0, 5, (6,), generator=g2)
    flip = torch.rand(6, generator=g2) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        ref = padded[i, :, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8]
        if flip[i]:
            ref = ref.flip(-1)
        assert torch.equal(got[i], ref), i
    assert flip.any() and not flip.all()  # the seed exercises both branches


def test_pipeline_resizes_normalises_and_adapts_greyscale():
    pipe = Pipeline(size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), augment=False)
    grey = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    out = pipe(grey)
    assert out.shape == (2, 3, 16, 16)
    assert torch.allclose(out, torch.full_like(out, 2.0))  # (1 - 0.5) / 0.25
    with pytest.raises(HarnessError, match="2 channels"):
        pipe(torch.zeros((1, 2, 8, 8), dtype=torch.uint8))


def test_augmentation_only_on_training_passes():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    split = ImageSplit(images, torch.arange(10), Pipeline(size=8, mean=(0, 0, 0), std=(1, 1, 1)))
    plain = torch.cat([b["pixel_values"] for b in split.batches(4)])
    assert torch.allclose(plain * 255, images.float())  # eval / feature extraction: untouched
    g = torch.Generator().manual_seed(0)
    batch = next(split.batches(10, shuffle=True, generator=g))
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert batch["labels"].tolist() == order.tolist()
    assert not torch.allclose(batch["pixel_values"] * 255, images[order].float())  # cropped/flipped
    # same seed, same batch: augmentation is drawn from the run's generator
    again = next(split.batches(10, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(batch["pixel_values"], again["pixel_values"])


def test_image_split_select_and_to_device():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    split = ImageSplit(images, torch.arange(10), Pipeline(size=4, mean=(0, 0, 0), std=(1, 1, 1)))
    sub = split.select(np.array([7, 2]))
    assert torch.equal(sub.images, images[[7, 2]]) and sub.labels.tolist() == [7, 2]
    placed = sub.to_device(torch.device("cpu"))
    assert placed.is_resident and placed.device.type == "cpu"
    # the residency policy, on the meta device (no GPU needed): auto/always move, never keeps host memory
    meta = torch.device("meta")
    on = sub.to_device(meta)
    assert on.images.device == meta and on.to_device(meta) is on  # placing twice never evicts
    never = ImageSplit(images, torch.arange(10), sub.pipeline, resident="never").to_device(meta)
    assert never.images.device.type == "cpu" and never.device == meta and not never.is_resident


def _write_folder(root: Path, classes=("cat", "dog", "fox"), per_class=6, size=(20, 14), mode="RGB", seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")


def test_imagefolder_tree_random_split(tmp_path, tiny):
    _write_folder(tmp_path / "pets")
    data = TARGETS.get("imagefolder").load(str(tmp_path / "pets"), {"val_fraction": 0.2, "test_fraction": 0.2},
                                           "image-classification", tiny)
    assert data.label_names == ["cat", "dog", "fox"]
    assert sum(len(s) for s in data.splits.values()) == 18
    assert data.preprocessing["path"] == "decoded"
    # 20×14 images are larger than the 16-px source: resized (shorter side) and centre-cropped on decode
    assert data.preprocessing["stored"] == [3, 16, 16]
    batch = next(data.splits["test"].batches(4))
    assert batch["pixel_values"].shape == (4, 3, 16, 16)


def test_decoded_images_are_cached_until_a_file_changes(tmp_path, tiny, monkeypatch):
    from PIL import Image

    import harness.targets.vision.decode as vision

    _write_folder(tmp_path / "pets", classes=("a", "b"), per_class=3, size=(8, 8))
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))  # the decoded cache lives in the data root
    params = {"val_fraction": 0.2, "test_fraction": 0.2}
    first = TARGETS.get("imagefolder").load(str(tmp_path / "pets"), params, "image-classification", tiny)
    assert len(list((tmp_path / "data" / ".decoded").glob("*.pt"))) == 1

    def no_decoding(self, i):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(vision.Decoder, "__call__", no_decoding)
    again = TARGETS.get("imagefolder").load(str(tmp_path / "pets"), params, "image-classification", tiny)
    assert torch.equal(again.splits["train"].images, first.splits["train"].images)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "pets" / "a" / "0.png")  # content changes
    with pytest.raises(AssertionError, match="decoded again"):
        TARGETS.get("imagefolder").load(str(tmp_path / "pets"), params, "image-classification", tiny)


def test_imagefolder_train_test_dirs_and_greyscale(tmp_path, tiny):
    _write_folder(tmp_path / "digits" / "train", classes=("a", "b"), size=(8, 8), mode="L")
    _write_folder(tmp_path / "digits" / "val", classes=("a", "b"), per_class=3, size=(8, 8), mode="L")
    data = TARGETS.get("imagefolder").load(str(tmp_path / "digits"), {"val_fraction": 0.25}, "image-classification", tiny)
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 9, "val": 3, "test": 6}
    assert data.split_info["test"] == "dataset's own"
    assert data.preprocessing["stored"] == [3, 8, 8]  # uniform small images stay native; grey → RGB on decode
    assert next(data.splits["train"].batches(2))["pixel_values"].shape == (2, 3, 16, 16)


def test_imagefolder_falls_back_to_a_dataloader_when_too_large(tmp_path, tiny):
    _write_folder(tmp_path / "big", classes=("a", "b"), per_class=4, size=(8, 8))
    params = {"max_decoded_gb": 1e-9, "val_fraction": 0.25, "test_fraction": 0.25}
    data = TARGETS.get("imagefolder").load(str(tmp_path / "big"), params, "image-classification", tiny)
    assert data.preprocessing["path"] == "dataloader"
    train = data.splits["train"]
    assert isinstance(train, LoaderSplit)
    decoded = TARGETS.get("imagefolder").load(str(tmp_path / "big"), {**params, "max_decoded_gb": 8},
                                              "image-classification", tiny)
    # both paths give the same pixels and labels for evaluation
    a = next(data.splits["test"].to_device(torch.device("cpu"), num_workers=0).batches(8))
    b = next(decoded.splits["test"].batches(8))
    assert torch.equal(a["labels"], b["labels"]) and torch.allclose(a["pixel_values"], b["pixel_values"])
    assert len(train.select(np.array([0, 1]))) == 2


def test_imagefolder_missing_directory(tmp_path, tiny):
    with pytest.raises(HarnessError, match="no directory"):
        TARGETS.get("imagefolder").load(str(tmp_path / "nope"), {}, "image-classification", tiny)


def test_hfimages_from_parquet(tmp_path, tiny):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["no", "yes"])})
    for split, n in (("train", 10), ("test", 4)):
        rows = {"img": [Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)) for _ in range(n)],
                "label": [i % 2 for i in range(n)]}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    params = {"data_dir": str(tmp_path / "cache"), "val_fraction": 0.2,
              "data_files": {"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")}}
    data = TARGETS.get("hfimages").load("parquet", params, "image-classification", tiny)
    assert data.label_names == ["no", "yes"]
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 8, "val": 2, "test": 4}
    assert data.splits["test"].labels.tolist() == [0, 1, 0, 1]
    assert next(data.splits["train"].batches(3))["pixel_values"].shape == (3, 3, 16, 16)
    with pytest.raises(HarnessError, match="no label column"):
        TARGETS.get("hfimages").load("parquet", {**params, "label_column": "y"}, "image-classification", tiny)


def test_a_tampered_cifar_batch_that_calls_a_function_is_refused(tmp_path, tiny):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    marker = tmp_path / "pwned"
    # a pickle whose load would run os.system("touch …"): GLOBAL os system, a string, TUPLE1, REDUCE
    batch.write_bytes(b"\x80\x02cos\nsystem\nX" + len(f"touch {marker}").to_bytes(4, "little")
                      + f"touch {marker}".encode() + b"\x85R.")
    with pytest.raises(HarnessError, match=r"data_batch_3: not a CIFAR batch \(UnpicklingError: refuses os.system"):
        TARGETS.get("torchvision").load("cifar10", {"data_dir": str(tmp_path), "download": False},
                                        "image-classification", tiny)
    assert not marker.exists()
    batch.write_bytes(b"\x80\x02]q\x00.")  # a list, not a dict
    with pytest.raises(HarnessError, match="holds a list, not a dict"):
        TARGETS.get("torchvision").load("cifar10", {"data_dir": str(tmp_path), "download": False},
                                        "image-classification", tiny)



def test_the_harness_writes_no_cache_or_download_into_a_directory_a_suite_names(tmp_path, tiny, monkeypatch):
    root = tmp_path / "default-data-dir"  # the data root (HARNESS_DATA_DIR, set by the autouse fixture)
    outside = tmp_path / "users-own-data"
    _write_folder(tmp_path / "pets", classes=("a", "b"), per_class=3, size=(8, 8))
    outside.mkdir()
    TARGETS.get("imagefolder").load(str(tmp_path / "pets"), {"data_dir": str(outside), "val_fraction": 0.2,
                                                             "test_fraction": 0.2}, "image-classification", tiny)
    assert list(outside.iterdir()) == []  # read-only for the harness
    assert len(list((root / ".decoded").glob("*.pt"))) == 1  # the decoded cache lives in the data root
    # a download into a suite-named directory outside the root is refused, nothing written
    with pytest.raises(HarnessError, match="downloads only into its data root"):
        TARGETS.get("torchvision").load("cifar10", {"data_dir": str(outside)}, "image-classification", tiny)
    # so is one through a symlink inside the root that leads out
    (root / "cifar").symlink_to(outside, target_is_directory=True)
    with pytest.raises(HarnessError, match="downloads only into its data root"):
        TARGETS.get("torchvision").load("cifar10", {"data_dir": str(root / "cifar")}, "image-classification", tiny)
    assert list(outside.iterdir()) == []
