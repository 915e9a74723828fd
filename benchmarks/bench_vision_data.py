"""Benchmark (b): the harness's decoded-once, device-resident image path vs the torchvision
``DataLoader`` path, producing the same training batches: CIFAR-shaped uint8 images → random
crop (padding 4) + horizontal flip → resize to ``--size`` → normalise → on the device.

* harness: :class:`harness.targets.vision.ImageSplit` placed on the device (``to_device``):
  one gather per batch for crop+flip, one ``interpolate``, one normalise — on the GPU when
  there is one, else on the CPU.
* torchvision: what the CIFAR recipes do — a dataset returning PIL images (as
  ``torchvision.datasets.CIFAR10`` does) with ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip``, ``Resize``, ``ToTensor``, ``Normalize``; a ``DataLoader`` with
  ``--workers`` (``pin_memory`` on CUDA), each batch copied to the device.

Prints images/s of each and the ratio harness / torchvision per worker count, in one run. Each
timed call is one full epoch from host memory to batches on the device, wall clock (CUDA
synchronised at both ends): the host → device upload is inside the clock on both sides —
torchvision copies each batch (float, ``--size`` px) in its epoch; the harness places the split at
the start of each timed epoch (its uint8 32 px images uploaded in one copy when they fit on the
device, else each uint8 batch copied), though a real run uploads once per run, not per epoch. On a
CPU there is no upload on either side. DataLoader worker start-up is inside the clock (as a
training epoch pays it). Both sides are warm: one untimed epoch of the harness and one untimed
batch of torchvision (0 workers) before any timing. The ``--repeats`` are interleaved: each
repeat times the harness and then every worker count, and the next repeat the reverse order, so
drift falls on both; median of ``--repeats``.

    python benchmarks/bench_vision_data.py                                  # CPU, 64 px
    python benchmarks/bench_vision_data.py --device cuda --size 224 --workers 0 8 16 --n 20000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vision_common import env_line, median, set_threads, synthetic_images, timed  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PILImages(torch.utils.data.Dataset):
    """Like ``torchvision.datasets.CIFAR10``: HWC uint8 array, a PIL image per item, transformed."""

    def __init__(self, data: np.ndarray, targets: list[int], transform):
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def torchvision_epoch(images: torch.Tensor, labels: torch.Tensor, size: int, batch_size: int, workers: int,
                      device: torch.device) -> int:
    from torchvision import transforms as T

    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.Resize(size, antialias=True), T.ToTensor(),
                    T.Normalize(MEAN, STD)])
    ds = PILImages(images.permute(0, 2, 3, 1).numpy(), labels.tolist(), tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=False)
    seen = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        seen += len(y)
    return seen


def harness_epoch(host_split, batch_size: int, seed: int, device: torch.device) -> int:
    """One epoch from host memory: the split placed on ``device`` (its images uploaded there when
    resident), then every batch, as the torchvision side uploads each of its batches in its epoch."""
    split = host_split.to_device(device)
    seen = 0
    for batch in split.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)):
        seen += len(batch["labels"])
    return seen


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4096, help="images per epoch")
    ap.add_argument("--size", type=int, default=64, help="output resolution (from 32 px)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to compare")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default on CPU: 1)")
    ap.add_argument("--smoke", action="store_true", help="tiny settings: checks the script runs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n, args.size, args.batch_size, args.workers, args.repeats = 64, 32, 32, [0], 1
    device = torch.device(args.device)
    set_threads(args.threads, device)
    from harness.targets.vision import ImageSplit, Pipeline

    images, labels = synthetic_images(args.n)
    host = ImageSplit(images, labels, Pipeline(size=args.size, mean=MEAN, std=STD))
    print(env_line(device))
    print(f"{args.n} images 32 px → {args.size} px | batch {args.batch_size} | resident on "
          f"{host.to_device(device).images.device} | repeats {args.repeats}")
    # untimed warm-up of both sides: lazy inits, allocator, upload path, PIL and transforms
    harness_epoch(host, args.batch_size, 0, device)
    torchvision_epoch(images[:args.batch_size], labels[:args.batch_size], args.size, args.batch_size, 0, device)
    sides = ["harness", *args.workers]
    runs: dict = {side: [] for side in sides}
    for r in range(args.repeats):  # the repeats interleaved, the order reversed every other repeat
        for side in sides if r % 2 == 0 else sides[::-1]:
            runs[side].append(timed(lambda r=r: harness_epoch(host, args.batch_size, r, device), device) if side == "harness"
                           else timed(lambda w=side: torchvision_epoch(images, labels, args.size, args.batch_size, w,
                                                                       device), device))
    t_h = runs["harness"]
    out = {"n": args.n, "size": args.size, "batch_size": args.batch_size, "device": env_line(device),
           "harness_images_per_s": args.n / median(t_h), "torchvision": {}}
    print(f"harness resident: {out['harness_images_per_s']:10.1f} img/s  (runs {[round(t, 3) for t in t_h]} s)")
    for w in args.workers:
        t_tv = runs[w]
        ips = args.n / median(t_tv)
        ratio = out["harness_images_per_s"] / ips
        out["torchvision"][w] = {"images_per_s": ips, "ratio": ratio}
        print(f"torchvision DataLoader, {w} worker(s): {ips:10.1f} img/s  (runs {[round(t, 3) for t in t_tv]} s)  "
              f"RATIO harness/torchvision: {ratio:.2f}")
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
