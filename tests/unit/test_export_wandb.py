"""`harness export wandb`: records → offline wandb runs, read back from the ``.wandb`` files wandb
wrote (its own protobuf records), never through the network."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.records import RunRecord, write_record
from harness.report.trackers import wandb_id, wandb_tags
from tests.factories import make_record
from tests.unit.test_trackers import write_all

CONFIG = {"train": {"lr": 1e-3, "epochs": 3, "optimizer": "adamw"}, "strategy": {"name": "full_finetune"}}


def record(seed: int, *, suite: str = "demo", role: str = "final", status: str = "ok",
           recorded_at: str | None = None) -> RunRecord:
    """A record with what the export reads: nested config, test and val metrics, a curve, cost."""
    accs = [0.5 + 0.01 * seed, 0.7 + 0.01 * seed, 0.8 + 0.01 * seed]
    return make_record(
        "full_finetune", seed, accs[-1], pair="digits", suite=suite, role=role, status=status,
        run_id=f"digits.full_finetune{'.t0' if role == 'trial' else ''}.s{seed}-{suite}",
        extra={"val": {"accuracy": accs[-1] + 0.01}}, config=CONFIG, recorded_at=recorded_at,
        curve=[{"epoch": e + 1, "step": 10 * (e + 1), "val_accuracy": a} for e, a in enumerate(accs)],
        cost={"wall_s": 12.5, "trainable_params": 1234, "peak_gpu_mem_mb": None})


BLOCK, HEADER = 32768, 7  # wandb's transaction log: LevelDB's log format after a 7-byte ":W&B" header


def read_wandb_file(path: Path) -> list:
    """Every ``wandb_internal_pb2.Record`` of a run's ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", HEADER
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST: a whole record
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            records.append(rec)
            pending = b""
    return records


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """wandb offline, quiet, and all its files under tmp_path; its service stopped afterwards."""
    wandb = pytest.importorskip("wandb", reason="the wandb export's test needs `pip install 'transfer-harness[track]'`")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    for var in ("WANDB_PROJECT", "WANDB_API_KEY", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path / "wandb-home"
    wandb.teardown()


def export(argv: list[str]) -> int:
    """``harness export`` as the command runs it: wandb's service stopped at the end, as at the
    process's exit, so that every run's ``.wandb`` file is flushed before the test reads it
    (``run.finish`` does not wait for the file's writer)."""
    import wandb

    try:
        return main(argv)
    finally:
        wandb.teardown()


def run_dirs(root: Path) -> list[Path]:
    return sorted((root / "wandb").glob("offline-run-*"))


def test_wandb_export_reads_back_and_is_idempotent(wandb_env, tmp_path, capsys):
    recs = [record(0), record(1), record(0, role="trial"), record(0, suite="other")]
    results = write_all(tmp_path / "results", recs)
    argv = ["export", "wandb", "--results", str(results), "--suite", "demo"]
    assert export(argv) == 0
    assert "wandb: 3 run(s) logged" in capsys.readouterr().out
    dirs = run_dirs(wandb_env)  # $WANDB_DIR, as wandb itself would
    assert len(dirs) == 3

    r = record(1)
    rid = wandb_id(r.run_id, "harness")
    (mine,) = [d for d in dirs if d.name.endswith(f"-{rid}")]
    logged = read_wandb_file(mine / f"run-{rid}.wandb")
    (run,) = [x.run for x in logged if x.WhichOneof("record_type") == "run"]
    assert (run.run_id, run.display_name, run.project, run.run_group, run.job_type) == (
        rid, r.run_id, "harness", "demo", "final")
    assert {"pair:digits", "strategy:full_finetune", "seed:1", "role:final", "status:ok"} <= set(run.tags)
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["train"] == CONFIG["train"] and config["strategy"] == CONFIG["strategy"]

    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in x.history.item}
               for x in logged if x.WhichOneof("record_type") == "history"]
    assert [h["_step"] for h in history] == [10, 20, 30]
    assert [h["curve/val_accuracy"] for h in history] == pytest.approx([0.51, 0.71, 0.81])
    summary = {}
    for x in logged:
        if x.WhichOneof("record_type") == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in x.summary.update})
    assert summary["accuracy"] == pytest.approx(0.81) and summary["val/accuracy"] == pytest.approx(0.82)
    assert summary["cost/wall_s"] == 12.5 and "cost/peak_gpu_mem_mb" not in summary
    kept = json.loads((mine / "files" / "record.json").read_text())
    assert kept["run_id"] == r.run_id and kept["metrics"]["accuracy"] == pytest.approx(0.81)

    assert export(argv) == 0  # again: nothing new, no run directory added
    assert "0 run(s) logged (0 replacing older records), 3 already exported" in capsys.readouterr().out
    assert run_dirs(wandb_env) == dirs

    write_record(results / "demo", record(1, recorded_at="2026-03-01T00:00:00+00:00"))  # a rerun
    assert export(argv) == 0
    assert "1 run(s) logged (1 replacing older records), 2 already exported" in capsys.readouterr().out
    now = run_dirs(wandb_env)
    assert len(now) == 3 and len([d for d in now if d.name.endswith(f"-{rid}")]) == 1


def test_wandb_export_is_offline_by_default_and_takes_dir_and_project(wandb_env, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE")  # no mode set, no key: an online attempt would fail to log in
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    results = write_all(tmp_path / "results", [record(0, status="failed")])
    out = tmp_path / "elsewhere"
    assert export(["export", "wandb", "--results", str(results), "--dir", str(out), "--project", "p2"]) == 0
    assert "1 run(s) logged" in capsys.readouterr().out
    (d,) = run_dirs(out)
    assert not run_dirs(wandb_env)  # --dir wins over $WANDB_DIR
    rid = wandb_id(record(0).run_id, "p2")
    assert d.name.endswith(f"-{rid}") and rid != wandb_id(record(0).run_id, "harness")
    logged = read_wandb_file(d / f"run-{rid}.wandb")
    (run,) = [x.run for x in logged if x.WhichOneof("record_type") == "run"]
    assert run.project == "p2" and "status:failed" in run.tags
    (exit_,) = [x.exit for x in logged if x.WhichOneof("record_type") == "exit"]
    assert exit_.exit_code == 1  # a failed run shows as failed


def test_wandb_ids_are_stable_and_valid():
    a = wandb_id("digits.full_finetune.s0-demo", "harness")
    assert a == wandb_id("digits.full_finetune.s0-demo", "harness") and a.isalnum() and a == a.lower()
    assert a != wandb_id("digits.full_finetune.s1-demo", "harness")
    assert all(len(t) <= 64 for t in wandb_tags(record(0, suite="s" * 80)))


def test_wandb_export_without_wandb_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed: `import wandb` raises ImportError
    results = write_all(tmp_path / "results", [record(0)])
    code = main(["export", "wandb", "--results", str(results), "--dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'transfer-harness[track]'" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()
