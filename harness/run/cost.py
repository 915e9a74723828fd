"""Cost, measured per run and never inferred: phase timers, peak memory, params, FLOPs, energy."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import torch

from harness import __version__


def rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Meter:
    """Times named phases and samples peak host RSS (and CUDA memory) during a run."""

    def __init__(self, device: torch.device, interval_s: float = 0.05):
        self.device = device
        self.seconds: dict[str, float] = {"train": 0.0, "eval": 0.0, "feature": 0.0}
        self.peak_rss_mb = rss_mb() or 0.0
        self._stop = threading.Event()
        self._interval = interval_s
        self._thread: threading.Thread | None = None
        self._energy0 = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._energy0 = gpu_energy_mj(self.device)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self.t0
        self._stop.set()
        if self._thread:
            self._thread.join()
        return False

    def _sample(self):
        while not self._stop.wait(self._interval):
            r = rss_mb()
            if r and r > self.peak_rss_mb:
                self.peak_rss_mb = r

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t

    def summary(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        e1 = gpu_energy_mj(self.device) if cuda else None
        # measurements beside the run (the domain gap a probe measures for its pair) are not its cost
        beside = sum(self.seconds.get(k, 0.0) for k in NOT_CHARGED)
        wall = getattr(self, "wall_s", time.perf_counter() - self.t0) - beside
        return {
            "wall_s": round(wall, 3),
            **({f"{k}_s": round(self.seconds[k], 3) for k in NOT_CHARGED if self.seconds.get(k)}),
            "train_s": round(self.seconds["train"], 3),
            "eval_s": round(self.seconds["eval"], 3),
            "feature_s": round(self.seconds["feature"], 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1) if cuda else None,
            "peak_gpu_reserved_mb": round(torch.cuda.max_memory_reserved(self.device) / 2**20, 1) if cuda else None,
            "energy_j": round((e1 - self._energy0) / 1000, 1) if e1 is not None and self._energy0 is not None else None,
            "gpu_hours": round(wall / 3600, 6) if cuda else 0.0,
        }


# phases timed beside a run, left out of its wall_s (and GPU-hours): the domain gap a probe measures
# for its pair, the label-free validators a DA run measures for model selection
NOT_CHARGED = ("domain_gap", "validators")


def gpu_energy_mj(device: torch.device) -> float | None:
    """Total energy counter of the GPU in millijoules (NVML), or None when unavailable."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # noqa: BLE001 - NVML missing or unsupported: no figure, not a made-up one
        return None


def step_flops(fn) -> int | None:
    """FLOPs of one call of ``fn`` (forward + backward) by PyTorch's flop counter."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            fn()
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - an op the counter cannot trace: report null, don't guess
        return None


_SECRET = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.I)
_ENV_KEEP = re.compile(r"^(CUDA_VISIBLE_DEVICES|OMP_NUM_THREADS|MKL_NUM_THREADS|CUBLAS_WORKSPACE_CONFIG|HARNESS_.*|HF_.*|TRANSFORMERS_.*)$")
_PACKAGES = ("torch", "torchvision", "transformers", "tokenizers", "timm", "peft", "numpy", "scikit-learn",
             "seqeval", "pydantic", "safetensors")


_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")  # https://user:token@host: a secret under an innocent name


def redacted_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The few environment variables that affect results; secrets are redacted."""
    environ = os.environ if environ is None else environ
    return {k: ("<redacted>" if _SECRET.search(k) else _URL_USERINFO.sub("<redacted>@", v))
            for k, v in sorted(environ.items()) if _ENV_KEEP.match(k)}


def git_sha(cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


_ENV_CACHE: dict[str, Any] | None = None


def cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo; else what platform says): kernels differ across
    CPUs, so bit-identical results are only expected on the same one (``harness compare``'s exact mode)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_capability() -> str | None:
    """The vector instruction set torch's CPU kernels run with (AVX512, AVX2, …; the environment
    variable ATEN_CPU_CAPABILITY lowers it). It changes float results where the CPU's model name
    may not: a VM reports "AMD EPYC" for several generations."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return get() if get is not None else None


def load_average() -> list[float] | None:
    """The machine's load average over 1, 5 and 15 minutes (``None`` where the OS has none): a run's
    times mean little on a machine busier than its cores, and the report says so."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    global _ENV_CACHE
    if _ENV_CACHE is None:
        versions = {}
        for pkg in _PACKAGES:
            try:
                versions[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                versions[pkg] = None
        _ENV_CACHE = {
            "harness": __version__,
            "git_sha": git_sha(os.path.dirname(os.path.abspath(__file__))) or git_sha(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "hostname": socket.gethostname(),
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "torch_threads": torch.get_num_threads(),
            "cpu_capability": cpu_capability(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "packages": versions,
        }
    dev = {"device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"}
    return {**_ENV_CACHE, **dev, "env": redacted_env()}  # env vars read per run: they may change between runs
