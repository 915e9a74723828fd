"""ImageFolder trees: ``<class>/<image>``, or ``train/`` and ``test/`` (``val/``) with class folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from harness.errors import HarnessError
from harness.registry import TARGETS
from harness.targets.base import (
    Target,
    TargetData,
)
from harness.targets.vision.common import VisionParams, data_root, decoded_target, pipeline_for
from harness.targets.vision.decode import Decoder, image_size

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


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
        sizes = [image_size(f) for f in files]
        stats = [(f, st.st_size, st.st_mtime_ns) for f in files for st in [os.stat(f)]]
        return decoded_target(Decoder(_OpenFile(files), None), sizes, labels, groups, classes, p,
                              pipeline_for(backbone, p), f"imagefolder {root}", p.test_fraction,
                              fingerprint=["imagefolder", str(root.resolve()), stats])
