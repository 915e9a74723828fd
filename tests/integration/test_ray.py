"""The Ray executor on a local instance with logical GPUs (no CUDA needed: Ray still gives each
task its own CUDA_VISIBLE_DEVICES): the local records, in dependency order; a worker killed
mid-run retried and recorded once; failures reach the dependants on every executor."""

from __future__ import annotations

import functools
import json
import os
import signal
import time

import pytest
import torch

from harness.executors.base import failed_record, run_plan
from harness.executors.job import Job, execute_job
from harness.executors.local import LocalExecutor
from harness.executors.pool import PoolExecutor
from harness.plan import expand
from harness.run.execute import ExecOptions
from harness.suite import load_suite
from tests.integration.test_pool import SUITE, outcome

ray = pytest.importorskip("ray", reason="the Ray executor's tests need `pip install 'transfer-harness[ray]'`")
from harness.executors.ray_executor import RayExecutor  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    """Two CPUs and two logical GPUs; GPU tasks hold no CPU slot, so two run at once."""
    # address="local": a fresh instance, never a cluster that happens to run on this machine
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_local_records_in_dependency_order(cluster, write_suite, tmp_path):
    runs = expand(load_suite(write_suite(SUITE.replace(", device: cpu", ""))))  # device auto: GPU tasks
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each task: one thread (two CPUs shared by two GPUs)
    try:
        local = run_plan(runs, tmp_path / "local", ExecOptions(cache_dir=tmp_path / "c1"))
    finally:
        torch.set_num_threads(threads)
    executor = RayExecutor(ExecOptions(cache_dir=tmp_path / "c2"))
    assert executor.gpus == 2 and executor.resources(Job(runs[0])) == {"num_gpus": 1.0, "num_cpus": 0, "threads": 1}
    done = run_plan(runs, tmp_path / "ray", ExecOptions(cache_dir=tmp_path / "c2"), executor=executor).done
    assert all(r.status == "ok" for r in done), [r.error for r in done if r.status != "ok"]
    assert {r.run_id: outcome(r) for r in done} == {r.run_id: outcome(r) for r in local.done}
    order = [r.run_id for r in done]
    for r in runs:
        assert all(order.index(d) < order.index(r.run_id) for d in r.depends_on)
    # each task saw one logical GPU of its own, and the two trials that ran at once saw both
    seen = {r.env["env"].get("CUDA_VISIBLE_DEVICES") for r in done}
    assert seen == {"0", "1"}, seen
    assert all(r.env["device"] == "cpu" for r in done)  # no CUDA here: `auto` fell back to the CPU


def meet(job: Job, options: ExecOptions, expected: int, wait_s: float = 240.0):
    """A run that only meets the others: it says where it runs, then waits until ``expected`` runs
    have started (or ``wait_s`` passed) and writes how many it saw. Tasks that Ray cannot run at
    once would each wait out ``wait_s`` and see fewer."""
    here = options.cache_dir
    here.mkdir(parents=True, exist_ok=True)
    (here / f"{job.spec.run_id}.start").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    deadline = time.monotonic() + wait_s
    while len(list(here.glob("*.start"))) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    (here / f"{job.spec.run_id}.met").write_text(str(len(list(here.glob("*.start")))))
    return failed_record(job.spec, "not run: it only met the others", "Probe")


def test_a_gpu_share_packs_small_runs_onto_one_gpu(cluster, write_suite, tmp_path):
    """Four runs of a quarter GPU each run at once on two logical GPUs: some GPU holds several."""
    # four runs of the plan, each a quarter GPU (the executor runs what it is given: dependencies
    # are the driver's business, and these runs only meet)
    runs = expand(load_suite(write_suite(SUITE.replace("device: cpu", "gpu_share: 0.25"))))[:4]
    assert len(runs) == 4
    options = ExecOptions(cache_dir=tmp_path / "met")
    executor = RayExecutor(options, run=functools.partial(meet, expected=len(runs)))
    assert executor.resources(Job(runs[0]))["num_gpus"] == 0.25
    for r in runs:
        executor.submit(Job(r))
    done = [executor.next_finished() for _ in runs]
    assert sorted(r.run_id for r in done) == sorted(r.run_id for r in runs)
    met = {r.run_id: int((options.cache_dir / f"{r.run_id}.met").read_text()) for r in runs}
    assert met == {r.run_id: len(runs) for r in runs}  # every run was in flight while the others were
    gpus = [(options.cache_dir / f"{r.run_id}.start").read_text() for r in runs]
    assert set(gpus) <= {"0", "1"} and max(gpus.count(g) for g in set(gpus)) >= 2, gpus  # one GPU, several runs
    cpu_only = expand(load_suite(write_suite(SUITE, "cpu.yaml")))
    assert executor.resources(Job(cpu_only[0])) == {"num_gpus": 0, "num_cpus": 1, "threads": 1}


def kill_once(job: Job, options: ExecOptions):
    """A run whose worker is SIGKILLed the first time it starts (the OOM killer, a lost node)."""
    marker = options.cache_dir / f"{job.spec.run_id}.killed"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return execute_job(job, options)


def kill_always(job: Job, options: ExecOptions):
    os.kill(os.getpid(), signal.SIGKILL)


def one_trial(write_suite):
    text = SUITE.replace("  - distill: {teacher: full_finetune}\n", "")
    return [r for r in expand(load_suite(write_suite(text))) if r.role == "trial"][:1]


@pytest.mark.parametrize("kind", ["ray", "pool"])
def test_a_killed_worker_is_retried_and_its_run_recorded_once(cluster, write_suite, tmp_path, kind):
    runs = one_trial(write_suite)
    options = ExecOptions(cache_dir=tmp_path / "cache")
    executor = RayExecutor(options, retries=1, run=kill_once) if kind == "ray" else \
        PoolExecutor(options, workers=1, threads=1, retries=1, run=kill_once)
    done = run_plan(runs, tmp_path / "results", options, executor=executor).done
    assert [(r.run_id, r.status) for r in done] == [(runs[0].run_id, "ok")]
    assert (options.cache_dir / f"{runs[0].run_id}.killed").exists()  # it was killed once
    files = list((tmp_path / "results").glob("*.json"))
    assert [json.loads(f.read_text())["run_id"] for f in files] == [runs[0].run_id]


def hang(job: Job, options: ExecOptions):
    """A run that never ends on its own: it says which process runs it, then waits."""
    (options.cache_dir / f"{job.spec.run_id}.pid").write_text(str(os.getpid()))
    time.sleep(600)


def test_close_cancels_the_runs_in_flight_and_stops_their_workers(cluster, write_suite, tmp_path):
    """What Ctrl-C does on Ray (the CLI's part is shared with the other executors and tested on
    them; the whole path on Ray is the slow test in tests/reliability/test_interrupt.py)."""
    runs = one_trial(write_suite)
    options = ExecOptions(cache_dir=tmp_path / "cache")
    options.cache_dir.mkdir()
    executor = RayExecutor(options, run=hang)
    executor.submit(Job(runs[0]))
    marker = options.cache_dir / f"{runs[0].run_id}.pid"
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(marker.read_text())
    assert executor.running == [runs[0].run_id]
    executor.close()
    assert executor.running == []
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), "the worker running the cancelled run goes on"


def test_a_run_whose_ray_workers_keep_dying_is_recorded_as_failed(cluster, write_suite, tmp_path):
    runs = one_trial(write_suite)
    executor = RayExecutor(ExecOptions(cache_dir=tmp_path), retries=1, run=kill_always)
    (record,) = run_plan(runs, tmp_path / "results", ExecOptions(cache_dir=tmp_path), executor=executor).done
    assert record.status == "failed" and record.error["type"] == "WorkerLost"
    assert "after 1 retry" in record.error["message"]


def fail_finetuning(job: Job, options: ExecOptions):
    """Every full fine-tuning run fails (a planted bug): its search's trials, so its finals."""
    if job.spec.strategy == "full_finetune":
        return failed_record(job.spec, "planted failure", "Planted")
    return execute_job(job, options)


@pytest.mark.parametrize("kind", ["local", "pool", "ray"])
def test_failed_trials_fail_their_final_and_its_students_on_every_executor(cluster, write_suite, tmp_path, kind):
    runs = expand(load_suite(write_suite(SUITE)))
    options = ExecOptions(cache_dir=tmp_path / "cache")
    executor = {"local": lambda: LocalExecutor(options, run=fail_finetuning),
                "pool": lambda: PoolExecutor(options, workers=2, threads=1, run=fail_finetuning),
                "ray": lambda: RayExecutor(options, run=fail_finetuning)}[kind]()
    done = {r.run_id: r for r in run_plan(runs, tmp_path / "results", options, executor=executor).done}
    assert set(done) == {r.run_id for r in runs}
    for r in runs:
        rec = done[r.run_id]
        assert rec.status == "failed"
        if r.role == "trial":
            assert rec.error["type"] == "Planted"
        elif r.strategy == "full_finetune":
            assert rec.error["type"] == "SearchFailed"
        else:  # the student: says which teacher failed
            assert rec.error["type"] == "DependencyFailed" and "full_finetune" in rec.error["message"]
