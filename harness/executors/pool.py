"""A pool of long-lived worker processes, each pinned to one device and its share of CPU threads.

Workers are started once and keep their loaded targets between runs. They are forked from a
forkserver that imported torch and the harness once, before any tensor op (so no thread pool or
CUDA context is inherited): a first worker costs one import, each further one or a replacement
for a dead one a fork — not a fresh interpreter's 2–3 s of imports and each talks to the driver's process over a pipe of its own: the pool hands a job
to an idle worker and so always knows which worker holds which run. A worker that dies mid-run
(SIGKILL, the OOM killer) takes nothing down with it — no shared queue lock, no lost job: it is
replaced and its run retried, up to ``retries`` times, then recorded as failed with the cause;
the other runs go on. Workers die with their driver, however it dies and however long their run
(see ``_die_with_driver``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque

from harness.executors.base import failed_record
from harness.executors.job import Job, Runner, execute_job
from harness.records import RunRecord
from harness.run.options import ExecOptions
from harness.run.process import own_process

# what the forkserver imports before it forks a worker; it computes nothing, so a worker inherits
# no thread pool, no CUDA context and no allocator state
PRELOAD = ["torch", "harness.executors.pool", "harness.run.execute"]


def _worker(device: str, threads: int, options: ExecOptions, run: Runner, conn, lifeline) -> None:
    """A worker's life: pin the device and the threads, then run the jobs it is sent until None."""
    import signal

    # Ctrl-C reaches the whole process group: the driver handles it (and terminates busy workers),
    # a worker would only print a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_driver(lifeline)
    import threading

    from tqdm.auto import tqdm

    # tqdm's default lock is a multiprocessing semaphore: a worker terminated mid-run (Ctrl-C)
    # could not release it, and Python would warn of a leaked semaphore at exit
    tqdm.set_lock(threading.RLock())
    # the device is pinned by what the process can see: `device: auto` then means this one
    os.environ["CUDA_VISIBLE_DEVICES"] = (device.split(":", 1)[1] if ":" in device else "0") \
        if device.startswith("cuda") else ""
    own_process(threads)
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the driver is gone
            return
        if job is None:
            return
        conn.send(run(job, options))


def _die_with_driver(lifeline) -> None:
    """Kill this worker as soon as the driver's process is gone, whatever killed it (SIGKILL, the
    OOM killer, a lost session), so no orphan goes on training for a driver that will never read
    its record.

    ``lifeline`` is the read end of a pipe whose write end only the driver holds: the kernel closes
    it when the driver dies, and a thread blocked reading it wakes to EOF. A death signal
    (PR_SET_PDEATHSIG) would not do: it follows the parent, here the forkserver, and the forkserver
    waits for its workers (each holds a copy of its "alive" descriptor), so the chain never fires.
    Reading the job pipe would not do either: a worker reads it only between runs."""
    import signal
    import threading

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                lifeline.recv_bytes()  # the driver never writes: this returns only at EOF
        os.kill(os.getpid(), signal.SIGKILL)  # at once: no exit handler may block on a dead driver

    threading.Thread(target=watch, name="harness-driver-watch", daemon=True).start()


class _Worker:
    def __init__(self, ctx, device: str, threads: int, options: ExecOptions, run: Runner, name: str, lifeline):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(device, threads, options, run, child, lifeline),
                                daemon=True, name=name)
        self.proc.start()
        child.close()  # the parent keeps only its end: a dead child then reads as EOF
        self.job: Job | None = None


class PoolExecutor:
    """``workers`` processes; worker ``i`` runs on ``devices[i % len(devices)]`` with
    ``threads`` CPU threads (default: the usable CPUs shared out)."""

    def __init__(self, options: ExecOptions, workers: int, devices: list[str] | None = None,
                 threads: int | None = None, retries: int = 1, run: Runner = execute_job):
        import multiprocessing

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.options, self.slots, self.retries, self.run = options, workers, retries, run
        self.devices = devices or ["cpu"]
        self.threads = threads or max(1, cpus // workers)
        # not a fork of the driver (it would inherit torch's thread pools and any CUDA context) but of a
        # forkserver that has imported and never computed; on platforms without one, a fresh interpreter
        if "forkserver" in multiprocessing.get_all_start_methods():
            self.ctx = multiprocessing.get_context("forkserver")
            self.ctx.set_forkserver_preload(PRELOAD)
        else:
            self.ctx = multiprocessing.get_context("spawn")
        self._lifeline = self._driver_alive = None  # made by start(), closed by close()
        self.workers: list[_Worker] = []
        self.waiting: deque[Job] = deque()
        self.tries: dict[str, int] = {}
        self.spawned = 0

    def start(self) -> None:
        """Start the workers (at the first job, so a rerun with nothing left to do starts none)."""
        if self._lifeline is None:
            # every worker gets the read end and watches it; the write end never leaves this
            # process (a pipe is not inherited across exec, and the forkserver is exec'd)
            self._lifeline, self._driver_alive = self.ctx.Pipe(duplex=False)
        while self.spawned < self.slots:
            self._spawn()

    def _spawn(self) -> _Worker:
        device = self.devices[self.spawned % len(self.devices)]
        w = _Worker(self.ctx, device, self.threads, self.options, self.run, f"harness-worker-{self.spawned}",
                    self._lifeline)
        self.spawned += 1
        self.workers.append(w)
        return w

    @property
    def running(self) -> dict[int, str]:
        """Worker pid → the run_id it is running."""
        return {w.proc.pid: w.job.spec.run_id for w in self.workers if w.job is not None}

    def submit(self, job: Job) -> None:
        self.start()
        self.tries.setdefault(job.spec.run_id, 0)
        self.waiting.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        for w in [w for w in self.workers if w.job is None and not w.proc.is_alive()]:
            self.workers.remove(w)  # died idle: it held nothing; a new one takes its place
            w.conn.close()
            self._spawn()
        for w in self.workers:
            if not self.waiting:
                return
            if w.job is None and w.proc.is_alive():
                job = self.waiting.popleft()
                try:
                    w.conn.send(job)
                except (BrokenPipeError, OSError):  # it died just now: the job waits for the next one
                    self.waiting.appendleft(job)
                    continue
                w.job = job

    def next_finished(self) -> RunRecord:
        from multiprocessing.connection import wait

        while True:
            busy = [w for w in self.workers if w.job is not None]
            if not busy and self.waiting:  # a worker died as it was handed a job: hand it on
                self._dispatch()
                busy = [w for w in self.workers if w.job is not None]
            if not busy:
                raise RuntimeError("next_finished() with no run in flight")
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=5.0)
            for w in busy:
                if w.conn in ready:
                    try:
                        record = w.conn.recv()
                    except (EOFError, OSError):  # died while answering: handled as a death below
                        pass
                    else:
                        job, w.job = w.job, None
                        self._dispatch()
                        if job is not None and record.run_id == job.spec.run_id:
                            return record
                        continue
                if not w.proc.is_alive() or w.proc.sentinel in ready:
                    w.proc.join(1)
                    if w.proc.is_alive():
                        continue
                    lost = self._replace(w)
                    if lost is not None:
                        return lost

    def _replace(self, w: _Worker) -> RunRecord | None:
        """A dead worker: a new one in its place; its run retried, or its failed record."""
        self.workers.remove(w)
        w.conn.close()
        job, code = w.job, w.proc.exitcode
        self._spawn()
        if job is None:
            self._dispatch()
            return None
        run_id = job.spec.run_id
        self.tries[run_id] += 1
        cause = f"the worker running it died (exit code {code}: a signal {-code if code and code < 0 else '–'})"
        if self.tries[run_id] <= self.retries:
            self.waiting.appendleft(job)
            self._dispatch()
            return None
        self._dispatch()
        return failed_record(job.spec, f"{cause}, {self.tries[run_id]} time(s); not retried again", "WorkerLost")

    def close(self) -> None:
        """Idle workers are told to stop; a worker still running a job (Ctrl-C, an error in the
        driver) is terminated at once: its run gets no record, a rerun starts it again."""
        for w in self.workers:
            if w.job is not None and w.proc.is_alive():
                w.proc.terminate()
            elif w.proc.is_alive():
                with contextlib.suppress(BrokenPipeError, OSError):
                    w.conn.send(None)
        deadline = time.monotonic() + 10
        for w in self.workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(5)
            w.conn.close()
        self.workers.clear()
        self.waiting.clear()
        if self._lifeline is not None:  # a worker that outlived the joins above dies now
            self._driver_alive.close()
            self._lifeline.close()
            self._lifeline = self._driver_alive = None
