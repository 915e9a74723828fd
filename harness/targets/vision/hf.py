"""Hugging Face image datasets with image and label columns (Hub ids, saved dirs, parquet/json files)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from harness.errors import HarnessError
from harness.registry import TARGETS
from harness.targets.base import (
    Target,
    TargetData,
)
from harness.targets.vision.common import data_root, decoded_target, pipeline_for
from harness.targets.vision.decode import Decoder
from harness.targets.vision.folder import FolderParams


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
            raise HarnessError("hfimages targets need the `datasets` package: pip install 'transfer-harness[vision]'") from e
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
