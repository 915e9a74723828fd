"""Determinism: same seed, same device → bit-identical metrics (CPU here; CUDA under the gpu marker);
``deterministic: true`` sets torch's deterministic algorithms, ``CUBLAS_WORKSPACE_CONFIG`` and the
cuDNN flags, and the record says what was in force."""

from __future__ import annotations

import os

import pytest
import torch

from harness import cli
from harness.plan import expand
from harness.records import scan
from harness.run.execute import execute
from harness.run.seed import determinism_state, seed_everything
from harness.suite import load_suite

SUITE = """\
suite: det
seeds: [0, 1]
defaults: {{epochs: 2, batch_size: 16, max_train_samples: 48, max_eval_samples: 16, lr: 1e-2, device: {device}}}
pairs:
  - id: cnn
    source: {{model: test/tiny_cnn}}
    target: {{dataset: test/tiny_images, task: image-classification}}
  - id: bert
    source: {{model: test/tiny_bert}}
    target: {{dataset: test/tiny_ner, task: token-classification}}
    train: {{max_train_samples: 32, max_steps: 3}}
strategies:
  - scratch
  - linear_probe: {{solver: adamw}}  # the loop path (the default L-BFGS probe has no curve)
  - full_finetune: {{deterministic: true}}
"""


@pytest.fixture(autouse=True)
def _restore_global_flags():
    state = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(state[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[1], state[2]


def plan(path, device="cpu"):
    path.write_text(SUITE.format(device=device))
    return expand(load_suite(path))


def outcome(rec):
    """Everything a rerun must reproduce exactly (timings aside)."""
    return {"status": rec.status, "metrics": rec.metrics, "curve": rec.curve, "split": rec.split,
            "steps": rec.cost.get("steps"), "config": rec.config["train"]}


CHECKED = {("cnn", "scratch"), ("cnn", "linear_probe"), ("cnn", "full_finetune"), ("bert", "full_finetune")}


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    """Each checked run of seed 0 executed twice in this process, plus cnn/scratch with seed 1."""
    runs = plan(tmp_path_factory.mktemp("det") / "det.yaml")
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    out = {(r.pair, r.label, r.seed): (execute(r), execute(r)) for r in runs
           if (r.pair, r.label) in CHECKED and r.seed == 0}
    seed1 = next(r for r in runs if (r.pair, r.label, r.seed) == ("cnn", "scratch", 1))
    out[("cnn", "scratch", 1)] = (execute(seed1), None)
    torch.use_deterministic_algorithms(flags[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[1], flags[2]
    return out


def test_same_seed_same_device_gives_bit_identical_metrics_on_cpu(twice):
    for key, (first, second) in twice.items():
        if second is None:
            continue
        assert first.status == "ok", (key, first.error)
        assert outcome(first) == outcome(second), key  # == on floats: bit-identical
        assert first.curve and first.metrics["val"]
    assert {k[:2] for k in twice} == CHECKED


def test_a_different_seed_gives_different_training(twice):
    """The comparison above can fail: change only the seed and the training curve changes."""
    a, b = twice[("cnn", "scratch", 0)][0], twice[("cnn", "scratch", 1)][0]
    assert a.curve[0]["train_loss"] != b.curve[0]["train_loss"]


def test_deterministic_sets_torch_cublas_and_cudnn(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert seed_everything(3, deterministic=True) == 3
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    seed_everything(3, deterministic=False)
    assert determinism_state()["algorithms"] is False and torch.backends.cudnn.benchmark


def test_record_says_whether_the_run_was_deterministic(twice):
    det = twice[("cnn", "full_finetune", 0)][0].config["notes"]
    assert det["deterministic"] is True
    assert det["determinism"]["algorithms"] is True and det["determinism"]["cudnn_deterministic"] is True
    assert det["determinism"]["cublas_workspace_config"] == ":4096:8"
    loose = twice[("cnn", "scratch", 0)][0].config["notes"]
    assert loose["deterministic"] is False and loose["determinism"]["algorithms"] is False


def test_run_sets_cublas_config_before_the_first_run(tmp_path, monkeypatch, capsys):
    """cuBLAS reads CUBLAS_WORKSPACE_CONFIG once per process, so `harness run` sets it up front when any
    run of the plan is deterministic — even if a non-deterministic run comes first."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = []
    import harness.run.execute as ex

    real = ex.execute

    def spy(spec, options, inputs=None):
        seen.append((spec.label, os.environ.get("CUBLAS_WORKSPACE_CONFIG")))
        return real(spec, options, inputs)

    monkeypatch.setattr(ex, "execute", spy)  # what every executor's execute_job calls
    suite = tmp_path / "det.yaml"
    plan(suite)
    assert cli.main(["run", str(suite), "--results", str(tmp_path / "r"), "--only", "cnn/[sf]*", "--no-progress"]) == 0
    assert seen[0][0] == "scratch" and all(v == ":4096:8" for _, v in seen)
    assert {r.config["notes"]["deterministic"] for r in scan(tmp_path / "r")[0]} == {True, False}


@pytest.mark.gpu
def test_same_seed_bit_identical_on_cuda_when_deterministic(tmp_path):
    runs = [r for r in plan(tmp_path / "det.yaml", device="cuda") if r.seed == 0 and r.label == "full_finetune"]
    for spec in runs:
        first, second = execute(spec), execute(spec)
        assert first.status == "ok", first.error
        assert first.env["device"].startswith("cuda")
        assert first.config["notes"]["determinism"]["algorithms"] is True
        assert outcome(first) == outcome(second), spec.run_id


def test_same_seed_bit_identical_across_processes(tmp_path, twice):
    """A fresh process (its own import order, allocator and thread pool start-up) reproduces the
    in-process records to the last bit: `harness run` twice in two processes, and against `twice`."""
    import json
    import subprocess
    import sys

    path = tmp_path / "det.yaml"
    path.write_text(SUITE.format(device="cpu"))
    got = []
    for i in range(2):
        results = tmp_path / f"r{i}"
        out = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--results", str(results),
                              "--only", "cnn.*.s0-*", "--no-progress"], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
        assert out.returncode == 0, out.stderr[-2000:]
        got.append({r["label"]: r for r in (json.loads(p.read_text()) for p in (results / "det").glob("*.json"))})
    assert set(got[0]) == {"scratch", "linear_probe", "full_finetune"}
    for label in got[0]:
        a, b = got[0][label], got[1][label]
        assert (a["metrics"], a["curve"]) == (b["metrics"], b["curve"]), label
        here = twice[("cnn", label, 0)][0]
        assert a["metrics"] == json.loads(here.model_dump_json())["metrics"], label
