"""Smoke tests of the vision benchmark scripts: they run on CPU with tiny settings and report
what they claim (figures, and MFU as n/a without a GPU). No timing is asserted."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import their shared module by name, as when run
    return importlib.import_module(name)


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_peak_table_and_marginal(monkeypatch):
    common = load("bench_vision_common")

    class FakeCuda:
        type = "cuda"

    assert common.peak_flops(torch.device("cpu")) == (None, common.device_name(torch.device("cpu")))
    assert common.peak_flops(torch.device("cpu"), override_tflops=100)[0] == 100e12
    names = {"NVIDIA H100 80GB HBM3": 989.4e12, "NVIDIA H100 PCIe": 756e12, "NVIDIA A100-SXM4-80GB": 312e12,
             "NVIDIA GeForce GTX 1080": None}
    for name, peak in names.items():
        monkeypatch.setattr(common, "device_name", lambda d, n=name: n)
        assert common.peak_flops(FakeCuda())[0] == peak, name
    assert common.marginal(t1=2.0, t2=6.0, n1=10, n2=50, batch_size=8) == 80.0  # 40 steps × 8 in 4 s


def test_mfu_script_runs_on_cpu_and_counts_flops(capsys):
    out = load("bench_vision_mfu").main(["--smoke", "--device", "cpu", "--model", "resnet18"])
    assert out["mfu"] is None and "MFU: n/a (not a CUDA device)" in capsys.readouterr().out
    assert out["images_per_s"] > 0
    # the loop's FLOP counter agrees with torchvision's MACs × 2 × 3 (fwd + bwd) within 3 %
    assert math.isclose(out["flops_per_image_counted"], out["flops_per_image_analytic"], rel_tol=0.03)


def test_data_script_compares_both_paths(capsys):
    out = load("bench_vision_data").main(["--smoke", "--device", "cpu"])
    assert out["harness_images_per_s"] > 0 and out["torchvision"][0]["ratio"] > 0
    assert "RATIO harness/torchvision" in capsys.readouterr().out
