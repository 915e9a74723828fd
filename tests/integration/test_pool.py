"""The pool executor: the same records as in-process, in dependency order; a worker killed
mid-run is replaced and its run retried (or recorded as failed once the retries are spent)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from harness.executors.base import run_plan
from harness.executors.job import Job
from harness.executors.pool import PoolExecutor
from harness.plan import expand
from harness.run.execute import ExecOptions
from harness.suite import load_suite

pytestmark = pytest.mark.integration

SUITE = """\
suite: pooled
seeds: [0, 1]
defaults: {epochs: 2, batch_size: 16, lr: 1e-2, max_train_samples: 48, max_eval_samples: 16, device: cpu}
pairs:
  - id: cnn
    source: {model: test/tiny_cnn}
    target: {dataset: test/tiny_images, task: image-classification}
strategies:
  - full_finetune: {search: {lr: [1e-3, 1e-1]}}
  - distill: {teacher: full_finetune}
"""


def outcome(rec):
    return rec.status, rec.metrics, rec.curve, rec.config["train"], rec.search and rec.search.get("chosen")


def test_pool_gives_the_local_records_in_dependency_order(write_suite, tmp_path):
    runs = expand(load_suite(write_suite(SUITE)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: float sums in the same order
    try:
        local = run_plan(runs, tmp_path / "local", ExecOptions(cache_dir=tmp_path / "c1"))
    finally:
        torch.set_num_threads(threads)
    pool = PoolExecutor(ExecOptions(cache_dir=tmp_path / "c2"), workers=2, threads=1)
    pooled = run_plan(runs, tmp_path / "pool", ExecOptions(cache_dir=tmp_path / "c2"), executor=pool)
    assert all(r.status == "ok" for r in pooled.done), [r.error for r in pooled.done if r.status != "ok"]
    a = {r.run_id: outcome(r) for r in local.done}
    b = {r.run_id: outcome(r) for r in pooled.done}
    assert a == b  # same metrics to the last digit, whichever process ran them
    order = [r.run_id for r in pooled.done]
    for r in runs:  # every run was written after everything it depends on
        assert all(order.index(d) < order.index(r.run_id) for d in r.depends_on)


def kill_first_run(pool: PoolExecutor) -> threading.Thread:
    def killer():
        deadline = time.monotonic() + 120
        while not pool.running and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # well inside the run: the worker has imported everything and is training
        (pid,) = pool.running
        os.kill(pid, signal.SIGKILL)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    return t


def slow_job(write_suite):
    text = SUITE.replace("epochs: 2", "epochs: 400").replace("  - distill: {teacher: full_finetune}\n", "")
    spec = next(r for r in expand(load_suite(write_suite(text))) if r.role == "trial")
    return Job(spec)


def test_a_killed_worker_is_replaced_and_its_run_retried(write_suite, tmp_path):
    pool = PoolExecutor(ExecOptions(cache_dir=tmp_path), workers=1, threads=1, retries=1)
    try:
        job = slow_job(write_suite)
        pool.submit(job)
        killer = kill_first_run(pool)
        record = pool.next_finished()
        killer.join()
        assert record.status == "ok" and record.run_id == job.spec.run_id
        assert pool.tries[job.spec.run_id] == 1
    finally:
        pool.close()


def test_a_run_whose_workers_keep_dying_is_recorded_as_failed(write_suite, tmp_path):
    pool = PoolExecutor(ExecOptions(cache_dir=tmp_path), workers=1, threads=1, retries=0)
    try:
        job = slow_job(write_suite)
        pool.submit(job)
        killer = kill_first_run(pool)
        record = pool.next_finished()
        killer.join()
        assert record.status == "failed" and record.error["type"] == "WorkerLost"
        assert "signal 9" in record.error["message"]
    finally:
        pool.close()


def test_killing_an_idle_worker_loses_nothing(write_suite, tmp_path):
    """Each worker has a pipe of its own: an idle worker killed while it waits for work holds no
    lock the others need, and the next job still runs."""
    pool = PoolExecutor(ExecOptions(cache_dir=tmp_path), workers=2, threads=1)
    try:
        pool.start()
        idle = pool.workers[1].proc.pid
        os.kill(idle, signal.SIGKILL)
        time.sleep(0.5)
        job = slow_job(write_suite)
        job = Job(type(job.spec)(**{**job.spec.__dict__, "train": {**job.spec.train, "epochs": 2}}))
        pool.submit(job)
        record = pool.next_finished()
        assert record.status == "ok" and record.run_id == job.spec.run_id
        assert len(pool.workers) == 2 and all(w.proc.is_alive() for w in pool.workers)
    finally:
        pool.close()
