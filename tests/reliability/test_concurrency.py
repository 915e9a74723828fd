"""Concurrency: two `harness run` on one results directory cannot corrupt it. The second refuses with a
clear message and exit code 3, or with --wait queues behind the first (real processes, real flock)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time

from harness.plan import expand
from harness.records import TMP_SUFFIX, scan
from harness.suite import load_suite

from .support import CNN_PAIR, harness_cmd, paused_harness_cmd

SUITE = """\
suite: shared
seeds: [0, 1]
defaults: {epochs: 1, batch_size: 16, max_steps: 2, max_train_samples: 32, max_eval_samples: 16}
""" + CNN_PAIR + """\
strategies:
  - scratch
"""


def lock_is_held(lock_file) -> bool:
    if not lock_file.exists():
        return False
    with open(lock_file) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_second_run_refuses_with_exit_3_and_a_waiting_run_queues(tmp_path):
    suite = tmp_path / "shared.yaml"
    suite.write_text(SUITE)
    results = tmp_path / "results"
    directory = results / "shared"
    base_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    run_args = ("run", str(suite), "--results", str(results), "--no-progress")
    argv = harness_cmd(*run_args)

    # A: holds the lock, parked inside its first record write (the test hook) until we kill it.
    first = subprocess.Popen(paused_harness_cmd(600, *run_args), env=base_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(directory.glob(f".*{TMP_SUFFIX}")):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never reached its first write"
            time.sleep(0.05)
        assert lock_is_held(directory / ".lock")
        listing = sorted(p.name for p in directory.iterdir())

        # B refuses, C (--wait) queues; both start while A holds the lock.
        refused = subprocess.Popen(argv, env=base_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = subprocess.Popen([*argv, "--wait"], env=base_env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        out, err = refused.communicate(timeout=240)
        assert refused.returncode == 3, (out, err)
        assert f"error: {directory} is in use by another `harness run`" in err and "--wait" in err
        assert "Traceback" not in err and out == ""
        assert sorted(p.name for p in directory.iterdir()) == listing  # B wrote nothing

        time.sleep(1.0)
        assert waiting.poll() is None, waiting.communicate()  # still queued behind A
        assert scan(results)[0] == []
    finally:
        first.kill()
        first.communicate()

    # A is gone (its lock with it): C goes ahead, sweeps A's half-written temp file, runs the suite.
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, out + err
    assert "2 run(s) executed, 0 already done" in out
    plan = expand(load_suite(suite))
    # each run's record and, beside it, the predictions it kept
    assert sorted(p.name for p in directory.iterdir()) == sorted([".lock", *(f"{r.run_id}{ext}" for r in plan
                                                                            for ext in (".json", ".preds.npz"))])
    records, corrupt = scan(results)
    assert corrupt == [] and sorted(r.run_id for r in records) == sorted(r.run_id for r in plan)
    assert not lock_is_held(directory / ".lock")


def test_two_workers_asking_for_the_same_features_extract_them_once(tmp_path, monkeypatch):
    """Two seeds of one probe in a pool ask for the same frozen features at the same moment: one
    extracts, the other waits on the entry's lock and reads what it wrote (same tensors), instead
    of extracting beside it."""
    import threading

    import torch

    from harness.run import features
    from harness.targets.base import TargetData, TensorSplit

    calls = []
    real = features.extract

    def slow_extract(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.4)  # long enough that the second caller arrives while the first extracts
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "extract", slow_extract)
    torch.manual_seed(0)
    split = TensorSplit({"pixel_values": torch.randn(6, 4), "labels": torch.arange(6) % 2})
    data = TargetData(["a", "b"], {"train": split}, {"seed": 0})
    backbone = torch.nn.Linear(4, 3)

    class Body(torch.nn.Module):
        def forward(self, batch):
            return backbone(batch["pixel_values"])

    got, barrier = [], threading.Barrier(2)

    def worker():
        barrier.wait()
        got.append(features.cached_features(Body(), data, {"k": 1}, tmp_path, torch.device("cpu"), 4))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(calls) == 1, f"extracted {len(calls)} times"
    (a, a_reused), (b, b_reused) = got
    assert sorted([a_reused is None, b_reused is None]) == [False, True]  # one computed, one read it
    assert torch.equal(a.splits["train"].tensors["features"], b.splits["train"].tensors["features"])


def test_load_or_compute_computes_once_and_rejects_what_does_not_fit(tmp_path):
    """The cache's one get-or-compute (features, probe fits, domain gap, decoded images): a payload
    that fails ``valid`` is recomputed; two callers at once compute once."""
    import threading

    import torch

    from harness import cache

    path = cache.entry(tmp_path, "x", "k")
    cache.save(path, torch.zeros(2))  # readable, but not what the caller needs
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return torch.ones(3)

    got, barrier = [], threading.Barrier(2)

    def caller():
        barrier.wait()
        got.append(cache.load_or_compute(path, compute, valid=lambda x: len(x) == 3))

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(calls) == 1 and sorted(hit for _, hit in got) == [False, True]
    assert all(torch.equal(x, torch.ones(3)) for x, _ in got)
    assert cache.load_or_compute(path, compute)[1] is True and len(calls) == 1
    value, hit = cache.load_or_compute(None, compute)  # no cache directory: computed, nothing kept
    assert hit is False and torch.equal(value, torch.ones(3)) and len(calls) == 2
