"""`harness export mlflow` against a real MLflow tracking server (sqlite backend) on 127.0.0.1,
read back through MlflowClient."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from harness.cli import main
from harness.records import write_record
from tests.unit.test_trackers import record, records, write_all

pytestmark = pytest.mark.integration
mlflow = pytest.importorskip("mlflow", reason="the MLflow export's test needs `pip install 'transfer-harness[track]'`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the MLflow server did not start:\n" + (root / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield uri
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_records_show_up_through_mlflowclient_once(server, tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    results = write_all(tmp_path / "results", records())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)  # the library's own convention picks the server
    argv = ["export", "mlflow", "--results", str(results), "--suite", "demo", "--experiment", "issue30"]
    assert main(argv) == 0
    assert "5 run(s) logged" in capsys.readouterr().out

    client = MlflowClient(server)
    exp = client.get_experiment_by_name("issue30")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("harness.kind") == "suite"]
    children = [r for r in runs if r.data.tags.get("harness.kind") == "run"]
    assert [p.info.run_name for p in parents] == ["demo"] and len(children) == 5
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(c.data.tags["harness.role"] for c in children) == ["final"] * 4 + ["trial"]

    r = record("full_finetune", 1)
    run = next(c for c in children if c.data.tags["harness.run_id"] == r.run_id)
    tags = run.data.tags
    assert (tags["harness.pair"], tags["harness.strategy"], tags["harness.seed"]) == ("digits", "full_finetune", "1")
    assert run.data.params["train.lr"] == "0.001" and run.data.params["source.model"] == "test/tiny_cnn"
    assert run.data.metrics["accuracy"] == pytest.approx(0.81)
    assert run.data.metrics["val/accuracy"] == pytest.approx(0.82)
    assert run.data.metrics["cost/wall_s"] == 12.5
    history = client.get_metric_history(run.info.run_id, "curve/val_accuracy")
    assert [(m.step, round(m.value, 6)) for m in sorted(history, key=lambda m: m.step)] == \
        [(10, 0.51), (20, 0.71), (30, 0.81)]
    assert run.info.status == "FINISHED"
    path = client.download_artifacts(run.info.run_id, f"record/{r.run_id}.json", str(tmp_path))
    with open(path) as f:
        assert json.load(f)["run_id"] == r.run_id

    assert main(argv) == 0  # again: nothing is logged twice
    assert "0 run(s) logged (0 replacing older records), 5 already exported" in capsys.readouterr().out
    assert len(client.search_runs([exp.experiment_id])) == 6

    write_record(results / "demo", record("full_finetune", 1, recorded_at="2026-03-01T00:00:00+00:00"))
    assert main(argv) == 0
    assert "1 run(s) logged (1 replacing older records), 4 already exported" in capsys.readouterr().out
    again = client.search_runs([exp.experiment_id], "tags.`harness.kind` = 'run'")
    assert len(again) == 5
    assert [c.data.tags["harness.written_at"] for c in again if c.data.tags["harness.run_id"] == r.run_id] == \
        ["2026-03-01T00:00:00+00:00"]
