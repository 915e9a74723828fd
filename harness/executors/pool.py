"""A pool of long-lived worker processes, each pinned to one device and its share of CPU threads.

Workers are spawned once (they import torch and the harness once) and run jobs from a shared
queue; records come back over a result queue as runs finish, and the driver writes them. A worker
that dies mid-run (SIGKILL, the OOM killer) is replaced and its run retried, up to ``retries``
times, then recorded as failed with the cause; the other runs go on.
"""

from __future__ import annotations

import os
import queue
import time

from harness.executors.base import Job, failed_record
from harness.records import RunRecord
from harness.run.execute import ExecOptions


def _worker(index: int, device: str, threads: int, options: ExecOptions, inbox, outbox) -> None:
    """A worker's life: pin the device and the threads, then run jobs until the sentinel."""
    # the device is pinned by what the process can see: `device: auto` then means this one
    os.environ["CUDA_VISIBLE_DEVICES"] = (device.split(":", 1)[1] if ":" in device else "0") \
        if device.startswith("cuda") else ""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(threads)
    from harness.cli import quiet_libraries
    from harness.run.execute import execute

    quiet_libraries()
    while True:
        job = inbox.get()
        if job is None:
            return
        outbox.put(("start", index, job.spec.run_id))
        outbox.put(("done", index, execute(job.spec, options, job.inputs)))


class PoolExecutor:
    """``workers`` processes; worker ``i`` runs on ``devices[i % len(devices)]`` with
    ``threads`` CPU threads (default: the usable CPUs shared out)."""

    def __init__(self, options: ExecOptions, workers: int, devices: list[str] | None = None,
                 threads: int | None = None, retries: int = 1):
        import multiprocessing

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.options, self.slots, self.retries = options, workers, retries
        self.devices = devices or ["cpu"]
        self.threads = threads or max(1, cpus // workers)
        self.ctx = multiprocessing.get_context("spawn")  # a forked child would inherit torch's thread pools
        self.inbox, self.outbox = self.ctx.Queue(), self.ctx.Queue()
        self.procs: dict[int, object] = {}
        self.running: dict[int, str] = {}  # worker → run_id it started
        self.jobs: dict[str, Job] = {}  # run_id → job, until its record is back
        self.tries: dict[str, int] = {}
        self.next_index = 0
        for _ in range(workers):
            self._spawn()

    def _spawn(self) -> None:
        i = self.next_index
        self.next_index += 1
        device = self.devices[i % len(self.devices)]
        p = self.ctx.Process(target=_worker, args=(i, device, self.threads, self.options, self.inbox, self.outbox),
                             daemon=True, name=f"harness-worker-{i}")
        p.start()
        self.procs[i] = p

    def submit(self, job: Job) -> None:
        self.jobs[job.spec.run_id] = job
        self.tries.setdefault(job.spec.run_id, 0)
        self.inbox.put(job)

    def next_finished(self) -> RunRecord:
        while True:
            try:
                kind, worker, payload = self.outbox.get(timeout=1.0)
            except queue.Empty:
                lost = self._reap()
                if lost is not None:
                    return lost
                continue
            if kind == "start":
                self.running[worker] = payload
                continue
            self.running.pop(worker, None)
            self.jobs.pop(payload.run_id, None)
            return payload

    def _reap(self) -> RunRecord | None:
        """Replace dead workers; retry the run a dead worker held, or give its failed record."""
        for i, p in list(self.procs.items()):
            if p.is_alive():
                continue
            del self.procs[i]
            self._spawn()
            run_id = self.running.pop(i, None)
            if run_id is None or run_id not in self.jobs:
                continue
            job = self.jobs[run_id]
            self.tries[run_id] += 1
            cause = f"the worker running it died (exit code {p.exitcode}: a signal {-p.exitcode} if negative)"
            if self.tries[run_id] <= self.retries:
                self.inbox.put(job)
                continue
            del self.jobs[run_id]
            return failed_record(job.spec, f"{cause}, {self.tries[run_id]} time(s); not retried again",
                                 "WorkerLost")
        return None

    def close(self) -> None:
        for _ in self.procs:
            self.inbox.put(None)
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(5)
        self.procs.clear()
