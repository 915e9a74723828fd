"""End to end through the real CLI: the offline quickstart suite in smoke mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_quickstart_smoke_end_to_end(tmp_path):
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    results, reports = tmp_path / "results", tmp_path / "reports"
    run = subprocess.run([sys.executable, "-m", "harness", "run", str(ROOT / "suites" / "quickstart.yaml"), "--smoke",
                          "--results", str(results)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    records = [json.loads(p.read_text()) for p in sorted((results / "quickstart-smoke").glob("*.json"))]
    finals = [r for r in records if r["role"] == "final"]
    # digits: 3 strategies × 3 seeds; WNUT-16: the probe and full fine-tuning × 3 seeds
    assert len(finals) == 3 * 3 + 2 * 3
    trials = [r for r in records if r["role"] == "trial"]  # digits' scratch and full fine-tuning, lr ∈ 3 values
    assert sorted((r["label"], r["search"]["point"]["lr"]) for r in trials) == sorted(
        (label, lr) for label in ("full_finetune", "scratch") for lr in (1e-3, 3e-3, 1e-2))
    assert all(r["search"]["chosen"] for r in finals if r["pair"] == "effnet-digits" and r["label"] != "linear_probe")
    for r in records:
        assert r["status"] == "ok", r["error"]
        assert r["smoke"] is True
        primary = r["metrics"][r["primary_metric"]]
        assert 0.0 <= primary <= 1.0
        assert r["cost"]["trainable_params"] <= r["cost"]["total_params"]
        assert r["env"]["packages"]["torch"]
        assert r["split"]["sizes"]["train"] > 0
    probe = [r for r in records if r["strategy"] == "linear_probe"]
    assert [r["config"]["notes"]["feature_cache_hit"] for r in probe if r["pair"] == "effnet-digits"] == [False, True, True]
    assert [r["config"]["notes"]["lbfgs"]["fit_cache_hit"] for r in probe if r["pair"] == "effnet-digits"] == [
        False, True, True]

    rep = subprocess.run([sys.executable, "-m", "harness", "report", "--results", str(results), "--reports", str(reports)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert rep.returncode == 0, rep.stderr
    board = (reports / "quickstart-smoke.md").read_text()
    assert rep.stdout.strip() == str(reports / "quickstart-smoke.md")
    for needle in ("### effnet-digits", "### minilm-wnut16", "`linear_probe`", "`full_finetune`", "`scratch`", "3/3",
                   "Budget and tuning", "lr ∈ [0.001, 0.003, 0.01] → **"):
        assert needle in board
