"""Shared pieces of the vision benchmarks (``bench_vision_loop``, ``bench_vision_data``,
``bench_vision_mfu``): synthetic CIFAR-shaped data, a harness ``fit`` timed by its own meter,
marginal throughput, and the peak-FLOPs table MFU is computed against.

Marginal throughput: a run of ``n1`` steps and a run of ``n2 > n1`` steps; images/s is
``(n2 - n1) × batch / (t2 - t1)``. Fixed costs (optimizer construction, the first step's FLOP
count, cuDNN autotuning, compilation) cancel, leaving the steady state both sides are compared on.
On a CPU the clock is the process's CPU time by default (``--clock``), which other jobs on the
machine do not inflate; with one intra-op thread it is the work done.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets; MFU is n/a elsewhere
# unless --peak-tflops is given.
PEAK_BF16 = {
    "H100 SXM": 989.4e12, "H100 80GB HBM3": 989.4e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H200": 989.4e12,
    "GH200": 989.4e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "A10": 125e12,
}


def peak_flops(device: torch.device, override_tflops: float | None = None) -> tuple[float | None, str]:
    """(peak bf16 FLOP/s, device name) — None when the device is not in the table."""
    if override_tflops:
        return override_tflops * 1e12, device_name(device)
    name = device_name(device)
    if device.type != "cuda":
        return None, name
    for key in sorted(PEAK_BF16, key=len, reverse=True):  # longest match first: "H100 PCIe" before "H100"
        if all(part in name for part in key.split()):
            return PEAK_BF16[key], name
    if "H100" in name:  # an H100 whose marketing name the table lacks: SXM is the common one
        return PEAK_BF16["H100 SXM"], name
    return None, name


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def synthetic_images(n: int, classes: int = 10, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-shaped uint8 images with a learnable signal (class c brightens one band)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    images = torch.randint(0, 160, (n, 3, size, size), generator=g, dtype=torch.uint8)
    band = size // classes or 1
    for c in range(classes):
        rows = slice((c * band) % size, (c * band) % size + band)
        sel = labels == c
        images[sel, :, rows, :] = images[sel, :, rows, :] + 90
    return images, labels


def vision_data(images: torch.Tensor, labels: torch.Tensor, size: int, n_eval: int = 32, augment: bool = True,
                resident: str = "auto"):
    """A ``TargetData`` of :class:`ImageSplit` s over ``images`` (train = all but ``2·n_eval``)."""
    from harness.targets.base import TargetData
    from harness.targets.vision import ImageSplit, Pipeline

    pipe = Pipeline(size=size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), augment=augment)
    evalp = Pipeline(size=size, mean=pipe.mean, std=pipe.std, augment=False)
    n = len(labels)
    splits = {"train": ImageSplit(images[:n - 2 * n_eval], labels[:n - 2 * n_eval], pipe, resident),
              "val": ImageSplit(images[n - 2 * n_eval:n - n_eval], labels[n - 2 * n_eval:n - n_eval], evalp, resident),
              "test": ImageSplit(images[n - n_eval:], labels[n - n_eval:], evalp, resident)}
    return TargetData([str(c) for c in range(int(labels.max()) + 1)], splits)


@dataclass
class FitTiming:
    train_s: float
    steps: int
    samples: int
    flops_per_step: int | None


def harness_fit(model: torch.nn.Module, data, steps: int, batch_size: int, device: torch.device, precision: str,
                channels_last: bool = False, compile: bool = False, lr: float = 1e-3, strategy: str = "full_finetune",
                seed: int = 0) -> FitTiming:
    """``steps`` optimizer steps of the harness loop; the train phase as its meter times it."""
    from harness.config.schema import TrainConfig
    from harness.registry import STRATEGIES, TASKS
    from harness.run.cost import Meter
    from harness.run.loop import fit

    n_train = len(data.splits["train"])
    epochs = max(1, -(-steps * batch_size // n_train))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, max_steps=steps, lr=lr, precision=precision,
                      channels_last=channels_last, compile=compile, eval_batch_size=256, eval_every=epochs)
    cls = STRATEGIES.get(strategy)
    strat = cls(cls.Params(), cfg)
    strat.prepare(model)
    with Meter(device) as meter:
        result = fit(model, data, TASKS.get("image-classification"), strat, cfg, device, seed, meter)
    return FitTiming(meter.seconds["train"], result.steps, result.train_samples, result.flops_per_step)


def set_threads(n: int | None, device: torch.device) -> None:
    """CPU runs default to one intra-op thread: on a shared machine, spinning OpenMP threads
    that wait on each other make timings swing by 10×; one thread keeps the ratio stable."""
    if n is None and device.type == "cpu":
        n = 1
    if n:
        torch.set_num_threads(n)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, clock: str = "wall") -> float:
    """Seconds ``fn`` takes: wall clock (CUDA synchronised), or this process's CPU time —
    on a CPU shared with other jobs, CPU time measures the work and not the neighbours' load."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    sync(device)
    t = now()
    fn()
    sync(device)
    return now() - t


def marginal(t1: float, t2: float, n1: int, n2: int, batch_size: int) -> float:
    """Images/s of the steps between ``n1`` and ``n2`` (fixed costs cancel)."""
    return (n2 - n1) * batch_size / max(t2 - t1, 1e-9)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def env_line(device: torch.device) -> str:
    return (f"device: {device_name(device)} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
            f"python {platform.python_version()}")
