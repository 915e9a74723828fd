"""Failure isolation: a run that raises, diverges (NaN/inf), runs out of memory or times out becomes a
``failed``/``timeout`` record with the reason and a traceback excerpt; the suite goes on, and
``--retry-failed`` reruns only those runs. ``on_oom: shrink`` halves the batch and doubles gradient
accumulation until the run fits (CUDA OOM simulated on CPU by monkeypatching)."""

from __future__ import annotations

import re

import pytest
import torch

from harness import cli
from harness.plan import expand
from harness.records import read_record, scan
from harness.run import execute as execute_mod
from harness.run.execute import execute
from harness.suite import load_suite

from .support import fingerprints

SUITE = """\
suite: faults
seeds: [0]
defaults: {epochs: 1, batch_size: 16, max_train_samples: 64, max_eval_samples: 32, lr: 1e-2}
pairs:
  - id: cnn
    source: {model: test/tiny_cnn}
    target: {dataset: test/tiny_images, task: image-classification}
strategies:  # each label computes something else (its lr): none may reuse another's record
  - full_finetune: {label: ok, lr: 2e-2}
  - full_finetune: {label: raises, lr: 3e-2}
  - full_finetune: {label: nan, lr: 4e-2}
  - full_finetune: {label: inf, lr: 5e-2}
  - full_finetune: {label: oom}
  - full_finetune: {label: slow, lr: 6e-2, timeout_s: 0.001}
"""

OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (simulated by the test)"


def inject_faults(monkeypatch, faults: dict[str, str]) -> None:
    """Make the run whose label is a key of ``faults`` fail that way, deep inside the training loop."""
    real_build = execute_mod.build

    def build(spec, device, inputs=None):
        strategy, model, data, task = real_build(spec, device, inputs)
        fault = faults.get(spec.label)
        real_forward = model.forward
        if fault == "raises":
            def forward(batch):
                raise ValueError("injected failure in forward")
            model.forward = forward
        elif fault in ("nan", "inf"):
            strategy.extra_loss = lambda *a: torch.tensor(float(fault))
        elif fault == "oom":
            def forward(batch):
                raise torch.cuda.OutOfMemoryError(OOM_MESSAGE)
            model.forward = forward
        assert model.forward is not real_forward or fault in (None, "nan", "inf")
        return strategy, model, data, task

    monkeypatch.setattr(execute_mod, "build", build)


def test_each_failure_is_a_record_and_the_suite_goes_on_then_retry_failed(write_suite, tmp_path, capsys, monkeypatch):
    suite = write_suite(SUITE)
    results = tmp_path / "results"
    inject_faults(monkeypatch, {"raises": "raises", "nan": "nan", "inf": "inf", "oom": "oom"})
    code = cli.main(["run", str(suite), "--results", str(results), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1  # some runs failed: non-zero, but every run was attempted
    assert "6 run(s) executed, 0 already done (skipped), 5 failed" in out
    by_label = {r.label: r for r in scan(results)[0]}
    assert set(by_label) == {"ok", "raises", "nan", "inf", "oom", "slow"}

    assert by_label["ok"].status == "ok" and by_label["ok"].error is None
    raised = by_label["raises"].error
    assert by_label["raises"].status == "failed"
    assert raised["type"] == "ValueError" and raised["message"] == "injected failure in forward"
    assert "Traceback" in raised["traceback"] and "in forward" in raised["traceback"]
    for label in ("nan", "inf"):
        rec = by_label[label]
        assert rec.status == "failed" and rec.error["type"] == "Diverged"
        assert re.search(rf"loss is {label}", rec.error["message"]), rec.error["message"]
        assert "raise Diverged" in rec.error["traceback"]
    oom = by_label["oom"].error
    assert by_label["oom"].status == "failed" and oom["type"] == "OutOfMemoryError" and oom["oom"] is True
    assert oom["message"] == OOM_MESSAGE and "Traceback" in oom["traceback"]
    slow = by_label["slow"]
    assert slow.status == "timeout" and slow.error["type"] == "RunTimeout"
    assert "timeout_s=0.001 exceeded" in slow.error["message"] and "raise RunTimeout" in slow.error["traceback"]
    for rec in by_label.values():  # a failure is a full record too: config, env, cost, timestamps
        assert rec.config["strategy"]["name"] == "full_finetune" and rec.env["python"] and rec.finished_at

    # --retry-failed, faults gone: only the five failed/timeout runs execute again; the ok one is untouched.
    before = fingerprints(results)
    monkeypatch.undo()
    code = cli.main(["run", str(suite), "--results", str(results), "--no-progress", "--retry-failed"])
    out = capsys.readouterr().out
    assert "5 run(s) executed, 1 already done (skipped), 1 failed" in out, out
    assert code == 1  # `slow` still times out: its budget is part of its config
    after = fingerprints(results)
    ok_id = by_label["ok"].run_id
    assert after[ok_id] == before[ok_id]
    assert all(after[k][1:] != before[k][1:] for k in before if k != ok_id)  # rewritten: new inode, time
    statuses = {r.label: r.status for r in scan(results)[0]}
    assert statuses == {"ok": "ok", "raises": "ok", "nan": "ok", "inf": "ok", "oom": "ok", "slow": "timeout"}

    # A plain rerun skips the ok runs and retries only what is not ok yet.
    code = cli.main(["run", str(suite), "--results", str(results), "--no-progress"])
    assert "1 run(s) executed, 5 already done" in capsys.readouterr().out


def oom_spec(write_suite, batch_size: int, on_oom: str):
    text = SUITE.replace("batch_size: 16", f"batch_size: {batch_size}").replace(
        "{label: oom}", f"{{label: oom, on_oom: {on_oom}}}")
    return next(r for r in expand(load_suite(write_suite(text))) if r.label == "oom")


def simulate_memory_limit(monkeypatch, max_batch: int) -> list[int]:
    """Training forwards (grad enabled: activations kept for backward) raise CUDA OOM on batches larger
    than ``max_batch``; returns the training batch sizes that ran."""
    real_build = execute_mod.build
    ran: list[int] = []

    def build(spec, device, inputs=None):
        strategy, model, data, task = real_build(spec, device, inputs)
        real_forward = model.forward

        def forward(batch):
            n = len(batch["labels"])
            if torch.is_grad_enabled():
                if n > max_batch:
                    raise torch.cuda.OutOfMemoryError(OOM_MESSAGE)
                ran.append(n)
            return real_forward(batch)

        model.forward = forward
        return strategy, model, data, task

    monkeypatch.setattr(execute_mod, "build", build)
    return ran


def test_on_oom_shrink_halves_batch_doubles_accumulation_and_records_it(write_suite, monkeypatch):
    spec = oom_spec(write_suite, batch_size=32, on_oom="shrink")
    reference = execute(spec)  # fits: the same run without a memory limit
    ran = simulate_memory_limit(monkeypatch, max_batch=8)
    rec = execute(spec)
    assert rec.status == "ok", rec.error
    notes = rec.config["notes"]
    assert [(r["batch_size"], r["grad_accum"]) for r in notes["oom_retries"]] == [(32, 1), (16, 2)]
    assert all(r["message"] == OOM_MESSAGE for r in notes["oom_retries"])
    assert (notes["batch_size_used"], notes["grad_accum_used"]) == (8, 4)  # effective batch still 32
    assert max(ran) == 8
    assert rec.config["train"]["batch_size"] == 32 and rec.run_id == spec.run_id  # the run's own config
    assert rec.cost["steps"] == reference.cost["steps"] and rec.cost["train_samples"] == reference.cost["train_samples"]


def test_on_oom_shrink_gives_up_at_batch_one(write_suite, monkeypatch):
    spec = oom_spec(write_suite, batch_size=4, on_oom="shrink")
    simulate_memory_limit(monkeypatch, max_batch=0)
    rec = execute(spec)
    assert rec.status == "failed" and rec.error["oom"] is True
    assert [(r["batch_size"], r["grad_accum"]) for r in rec.config["notes"]["oom_retries"]] == [(4, 1), (2, 2)]


@pytest.mark.parametrize("on_oom", ["fail", None])
def test_on_oom_fail_is_the_default_and_does_not_retry(write_suite, monkeypatch, on_oom):
    text = SUITE if on_oom is None else SUITE.replace("{label: oom}", f"{{label: oom, on_oom: {on_oom}}}")
    spec = next(r for r in expand(load_suite(write_suite(text))) if r.label == "oom")
    ran = simulate_memory_limit(monkeypatch, max_batch=8)
    rec = execute(spec)
    assert rec.status == "failed" and rec.error["oom"] is True and rec.error["type"] == "OutOfMemoryError"
    assert "oom_retries" not in rec.config["notes"] and ran == []


def test_a_bad_value_for_on_oom_is_a_config_error(write_suite, capsys):
    suite = write_suite(SUITE.replace("{label: oom}", "{label: oom, on_oom: retry}"))
    assert cli.main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(suite))}:\d+: strategies\[4\]\.full_finetune\.on_oom: ", err), err


def test_failed_record_on_disk_reads_back(write_suite, tmp_path, monkeypatch):
    """The failed record is a valid record file (the report can show the failed seed)."""
    suite = write_suite(SUITE.replace("  - full_finetune: {label: ok, lr: 2e-2}\n", ""))
    inject_faults(monkeypatch, {"raises": "raises"})
    cli.main(["run", str(suite), "--results", str(tmp_path / "r"), "--no-progress", "--only", "*raises*"])
    (path,) = (tmp_path / "r" / "faults").glob("*.json")
    rec = read_record(path)
    assert rec.status == "failed" and rec.error["type"] == "ValueError"
