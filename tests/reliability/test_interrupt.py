"""Ctrl-C during ``harness run``, on every executor: the runs in flight are cancelled, nothing is
half-written, no traceback, exit code 130; the same command then resumes, and every run is
recorded once."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.plan import expand
from harness.suite import load_suite
from tests.integration.test_pool import SUITE as POOL_SUITE

from .support import CNN_PAIR, ROOT

# the pool tests' suite (a searched teacher, its students), each run long enough to be caught mid-way
SUITE = POOL_SUITE.replace("suite: pooled", "suite: interrupted").replace("epochs: 2,", "epochs: 80,")
# On Ray the whole path (two Ray start-ups, ~30 s) is slow; its own part, cancelling what is in
# flight, is in the default run: tests/integration/test_ray.py::test_close_cancels_the_runs_in_flight…
# one run that would train for many minutes: its worker is mid-run whenever the driver dies
ENDLESS_SUITE = """\
suite: endless
seeds: [0]
defaults: {epochs: 100000, batch_size: 16, lr: 1e-2, max_train_samples: 48, max_eval_samples: 16, device: cpu}
""" + CNN_PAIR + """\
strategies:
  - full_finetune
"""
EXECUTORS = ["local", "pool", pytest.param("ray", marks=[pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="needs `pip install 'transfer-harness[ray]'`")])]

# a run's kept predictions: written whole (atomically) before its record, so never a temp file; one
# whose record the interrupt forestalled is rewritten by the rerun
PREDS = ".preds.npz"


def as_a_terminal_job() -> None:
    # a shell's background job (CI launched with `&`) ignores SIGINT, and a child inherits that:
    # Python then installs no KeyboardInterrupt handler. A terminal's foreground job never has it
    # ignored, so the harness starts as one would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def harness_run(suite, results, executor, **kw):
    return subprocess.Popen([sys.executable, "-m", "harness", "run", str(suite), "--results", str(results),
                             "--executor", executor, "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
                            preexec_fn=as_a_terminal_job, **kw)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_ctrl_c_cancels_the_runs_in_flight_and_a_rerun_resumes(tmp_path, executor):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    results = tmp_path / "results"
    directory = results / "interrupted"
    # its own process group, as a terminal's foreground job: Ctrl-C reaches the driver and its workers
    proc = harness_run(suite, results, executor, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(directory.glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # the first record: the driver is mid-plan, its next runs in flight
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err, err
    leftover = [p.name for p in directory.iterdir() if not p.name.endswith((".json", PREDS)) and p.name != ".lock"]
    assert leftover == []  # no temp file, no half-written record
    before = {p.name: json.loads(p.read_text()) for p in directory.glob("*.json")}
    assert before and all(r["status"] == "ok" for r in before.values())
    plan = expand(load_suite(suite))
    assert len(before) < len(plan)  # it was interrupted mid-plan
    kept = finished_records(directory)

    rerun = harness_run(suite, results, executor)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert_kept(directory, kept)
    assert f"{len(before)} already done (skipped)" in out
    after = {p.name: json.loads(p.read_text()) for p in directory.glob("*.json")}
    assert sorted(r["run_id"] for r in after.values()) == sorted(r.run_id for r in plan)  # each once
    assert all(after[name] == rec for name, rec in before.items())  # nothing finished was redone


def children(pid: int) -> set[int]:
    out = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out |= {int(c) for c in f.read().split()}
    return out


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``: the pool's workers are forked by its forkserver, a child of the driver."""
    found, todo = set(), [pid]
    while todo:
        kids = children(todo.pop()) - found
        found |= kids
        todo.extend(kids)
    return found


def state(pid: int) -> str:
    """A process's state letter (Z: a zombie, dead but not yet reaped); "" once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def living(pids) -> list[int]:
    """Those of ``pids`` still running (a zombie is dead: it only waits to be reaped)."""
    return sorted(p for p in pids if state(p) not in ("", "Z"))


def finished_records(directory) -> dict[str, tuple[bytes, int]]:
    """Every record file under ``directory``: name → (its bytes, its mtime); a rewrite changes the mtime
    even with the same bytes."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.glob("*.json")}


def assert_kept(directory, before: dict[str, tuple[bytes, int]]) -> None:
    """The records finished before the driver was stopped are still there, untouched by the rerun."""
    after = finished_records(directory)
    assert before and {name: after.get(name) for name in before} == before


def pool_run_past_its_first_record(tmp_path):
    """`harness run --executor pool` started on the long suite and caught mid-plan, just after its
    first record: (suite, results, records directory, driver process, the forkserver and workers)."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    results = tmp_path / "results"
    directory = results / "interrupted"
    proc = harness_run(suite, results, "pool")
    deadline = time.monotonic() + 240
    while not list(directory.glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    workers = descendants(proc.pid)
    assert proc.poll() is None and len(workers) >= 2  # the forkserver and the worker(s) it forked
    return suite, results, directory, proc, workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_driver_takes_its_pool_workers_with_it_and_a_rerun_resumes(tmp_path):
    suite, results, directory, proc, workers = pool_run_past_its_first_record(tmp_path)
    proc.kill()  # the driver alone, as the OOM killer or a lost session would
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 20
    while any(os.path.exists(f"/proc/{w}") for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [w for w in workers if os.path.exists(f"/proc/{w}") and state(w) != "Z"]
    assert alive == []  # no orphan goes on training
    before = finished_records(directory)
    rerun = harness_run(suite, results, "pool")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert_kept(directory, before)
    after = [json.loads(p.read_text())["run_id"] for p in directory.glob("*.json")]
    assert sorted(after) == sorted(r.run_id for r in expand(load_suite(suite)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_pool_and_its_workers_like_ctrl_c(tmp_path):
    """A CI job cancelled or timed out sends SIGTERM to the driver alone: before, the driver died and
    its forkserver and workers trained on as orphans for minutes. Now it cancels like Ctrl-C: exit
    143, no traceback, nothing half-written, no process left; a rerun resumes."""
    suite, results, directory, proc, workers = pool_run_past_its_first_record(tmp_path)
    proc.terminate()  # SIGTERM, the driver alone
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)
    assert "terminated" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 20
    while any(os.path.exists(f"/proc/{w}") and state(w) != "Z" for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [w for w in workers if os.path.exists(f"/proc/{w}") and state(w) != "Z"] == []
    leftover = [p.name for p in directory.iterdir() if not p.name.endswith((".json", PREDS)) and p.name != ".lock"]
    assert leftover == []
    before = finished_records(directory)
    rerun = harness_run(suite, results, "pool")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert_kept(directory, before)
    after = [json.loads(p.read_text())["run_id"] for p in directory.glob("*.json")]
    assert sorted(after) == sorted(r.run_id for r in expand(load_suite(suite)))


# SIGKILL is the hard case (the driver runs no code of its own); SIGTERM and Ctrl-C go through its
# handlers, which the shorter tests above cover in the default run
STOPS = {
    "SIGKILL": lambda proc: proc.kill(),  # the driver alone, as the OOM killer or a lost session would
    "SIGTERM": lambda proc: proc.terminate(),  # the driver alone, as a cancelled CI job
    "Ctrl-C": lambda proc: os.killpg(proc.pid, signal.SIGINT),  # the whole foreground job
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("stop", [pytest.param("SIGKILL"), pytest.param("SIGTERM", marks=pytest.mark.slow),
                                  pytest.param("Ctrl-C", marks=pytest.mark.slow)])
def test_a_dead_driver_takes_its_pool_with_it_however_long_the_run(tmp_path, stop):
    """The worker is minutes from the end of its run, so it never reads its job pipe again: only
    the driver's death can stop it. Stop the driver mid-run: its forkserver, resource tracker and
    worker must all be gone within seconds (a death signal tied to the forkserver never fired:
    the forkserver waits for its workers)."""
    suite = tmp_path / "endless.yaml"
    suite.write_text(ENDLESS_SUITE)
    proc = harness_run(suite, tmp_path / "results", "pool", start_new_session=True)
    everyone: set[int] = set()
    try:
        deadline, workers = time.monotonic() + 90, set()
        # a worker is a grandchild (forked by the forkserver); past 2 s of CPU it is in its run
        while time.monotonic() < deadline and proc.poll() is None:
            everyone |= descendants(proc.pid)
            workers = everyone - children(proc.pid)
            if any(cpu_seconds(w) > 2.0 for w in workers):
                break
            time.sleep(0.2)
        assert proc.poll() is None and any(cpu_seconds(w) > 2.0 for w in workers), "no worker started training"
        everyone |= descendants(proc.pid)
        STOPS[stop](proc)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while living(everyone) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert living(everyone) == [], f"orphans of the driver stopped by {stop} still run"
    finally:
        for pid in living(everyone):  # a failed run of this test must not leave them training
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
