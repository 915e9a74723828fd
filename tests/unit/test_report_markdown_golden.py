"""The leaderboard renderer against a golden file (set UPDATE_GOLDEN=1 to rewrite it)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.records import RunRecord
from harness.report.aggregate import aggregate
from harness.report.markdown import render

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "leaderboard_golden.md"


def rec(pair, label, seed, acc, status="ok", task="image-classification", primary="accuracy", **metrics):
    return RunRecord(
        run_id=f"{pair}.{label}.s{seed}-0", suite="golden", pair=pair, strategy=label, label=label, seed=seed,
        status=status, task=task, primary_metric=primary, config={},
        metrics={} if status != "ok" else {primary: acc, **metrics},
        error=None if status == "ok" else {"type": "Diverged", "message": "loss is nan at step 7"},
        cost={"train_s": 10.0 + seed, "peak_rss_mb": 900.0, "trainable_params": 1000 if label == "linear_probe" else 50_000,
              "total_params": 50_000},
        started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:00:00+00:00")


def records():
    out = []
    for seed, (s, lp, ft) in enumerate([(0.70, 0.90, 0.95), (0.72, 0.91, 0.96), (0.74, 0.92, 0.97)]):
        out += [rec("cnn-digits", "scratch", seed, s, macro_f1=s - 0.01),
                rec("cnn-digits", "linear_probe", seed, lp, macro_f1=lp - 0.01),
                rec("cnn-digits", "full_finetune", seed, ft, macro_f1=ft - 0.01) if seed != 2 else
                rec("cnn-digits", "full_finetune", seed, None, status="failed")]
        out.append(rec("bert-ner", "full_finetune", seed, 0.40 + seed / 100, task="token-classification",
                       primary="f1", precision=0.5, recall=0.35))
    return out


def test_leaderboard_matches_golden():
    text = render(aggregate(records()))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_failed_seeds_counted_and_ranked_by_primary():
    rows = [r for r in aggregate(records()) if r.pair == "cnn-digits"]
    assert [r.label for r in rows] == ["full_finetune", "linear_probe", "scratch"]
    ft = rows[0]
    assert (ft.n_ok, ft.n_failed) == (2, 1)
    assert ft.metrics["accuracy"].mean == 0.955
    text = render(aggregate(records()))
    assert "2/3 ⚠" in text and "loss is nan at step 7" in text
    # gain vs scratch, seed-paired: ft − scratch on seeds 0,1 = 0.25, 0.24
    assert "+24.50 [" in text
