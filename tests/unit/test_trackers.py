"""`harness export`: records → tracker runs (the TensorBoard half here; MLflow against a real server
in tests/integration/test_export_mlflow.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.records import RunRecord, write_record
from harness.report.trackers import curve_points, final_metrics, params, select, tags

CURVE_ACC = {"full_finetune": [0.5, 0.7, 0.8], "scratch": [0.3, 0.4, 0.45]}


def record(label: str, seed: int, role: str = "final", suite: str = "demo", status: str = "ok",
           recorded_at: str | None = None) -> RunRecord:
    """A small record with what an export reads: nested config, test and val metrics, a curve, cost."""
    accs = [a + 0.01 * seed for a in CURVE_ACC[label]]
    return RunRecord(
        run_id=f"digits.{label}{'.t0' if role == 'trial' else ''}.s{seed}-{suite}",
        suite=suite, pair="digits", strategy=label, label=label, seed=seed, role=role, status=status,
        task="image-classification", primary_metric="accuracy",
        config={"train": {"lr": 1e-3, "epochs": 3, "optimizer": "adamw"}, "strategy": {"name": label, "params": {}},
                "source": {"model": "test/tiny_cnn"}, "c_grid": [0.1, 1.0]},
        metrics={"accuracy": accs[-1], "macro_f1": accs[-1] - 0.02, "per_label": {"0": 0.9, "1": 0.8},
                 "val": {"accuracy": accs[-1] + 0.01}} if status == "ok" else {},
        curve=[{"epoch": e + 1, "step": 10 * (e + 1), "train_loss": 1.0 / (e + 1), "val_accuracy": a}
               for e, a in enumerate(accs)],
        cost={"wall_s": 12.5, "train_s": 10.0, "trainable_params": 1234, "peak_gpu_mem_mb": None},
        started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:01:00+00:00", recorded_at=recorded_at)


def records() -> list[RunRecord]:
    out = [record(label, seed) for label in CURVE_ACC for seed in (0, 1)]
    return out + [record("full_finetune", 0, role="trial"), record("scratch", 0, suite="other")]


def write_all(directory: Path, recs: list[RunRecord]) -> Path:
    for r in recs:
        write_record(directory / r.suite, r)
    return directory


def test_what_a_run_logs():
    r = record("full_finetune", 1)
    finals = final_metrics(r)
    assert finals["accuracy"] == pytest.approx(0.81) and finals["val/accuracy"] == pytest.approx(0.82)
    assert finals["per_label/1"] == 0.8 and finals["cost/wall_s"] == 12.5
    assert "cost/peak_gpu_mem_mb" not in finals  # not measured: no zero invented
    assert list(curve_points(r))[:2] == [(10, "curve/epoch", 1.0), (10, "curve/train_loss", 1.0)]
    assert [v for s, k, v in curve_points(r) if k == "curve/val_accuracy"] == pytest.approx([0.51, 0.71, 0.81])
    p = params(r)
    assert p["train.lr"] == "0.001" and p["train.optimizer"] == "adamw" and p["c_grid"] == "[0.1, 1.0]"
    t = tags(r)
    assert t["harness.pair"] == "digits" and t["harness.seed"] == "1" and t["harness.role"] == "final"


def test_select_keeps_the_latest_record_of_each_run_and_one_suite():
    old, new = record("scratch", 0), record("scratch", 0, recorded_at="2026-02-01T00:00:00+00:00")
    assert select([new, old]) == [new]
    chosen = select(records(), "demo")
    assert {r.suite for r in chosen} == {"demo"} and len(chosen) == 5


def test_tensorboard_export_reads_back_and_is_idempotent(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results, logdir = write_all(tmp_path / "results", records()), tmp_path / "tb"
    argv = ["export", "tensorboard", "--results", str(results), "--suite", "demo", "--logdir", str(logdir)]
    assert main(argv) == 0
    assert "5 run(s) logged" in capsys.readouterr().out
    runs = sorted(p.name for p in (logdir / "demo").iterdir())
    assert len(runs) == 5 and not (logdir / "other").exists()
    r = record("full_finetune", 1)
    acc = EventAccumulator(str(logdir / "demo" / r.run_id))
    acc.Reload()
    curve = acc.Scalars("curve/val_accuracy")
    assert [e.step for e in curve] == [10, 20, 30]
    assert [e.value for e in curve] == pytest.approx([0.51, 0.71, 0.81])
    assert acc.Scalars("final/accuracy")[0].value == pytest.approx(0.81)
    kept = json.loads((logdir / "demo" / r.run_id / "record.json").read_text())
    assert kept["run_id"] == r.run_id and kept["metrics"]["accuracy"] == pytest.approx(0.81)

    files = sorted(str(p) for p in logdir.rglob("*") if p.is_file())
    assert main(argv) == 0  # again: nothing new
    assert "0 run(s) logged (0 replacing older records), 5 already exported" in capsys.readouterr().out
    assert sorted(str(p) for p in logdir.rglob("*") if p.is_file()) == files

    write_record(results / "demo", record("full_finetune", 1, recorded_at="2026-03-01T00:00:00+00:00"))
    assert main(argv) == 0
    assert "1 run(s) logged (1 replacing older records), 4 already exported" in capsys.readouterr().out
    acc = EventAccumulator(str(logdir / "demo" / r.run_id))
    acc.Reload()
    assert len(acc.Scalars("curve/val_accuracy")) == 3  # replaced, not appended to


def test_export_without_records_says_so(tmp_path, capsys):
    assert main(["export", "tensorboard", "--results", str(tmp_path), "--logdir", str(tmp_path / "tb")]) == 1
    assert "no run records" in capsys.readouterr().err
