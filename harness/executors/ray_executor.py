"""One Ray task per run, on a local Ray instance or a cluster (``pip install 'transfer-harness[ray]'``).

The driver (:func:`harness.executors.base.run_plan`) keeps everything it keeps for the other
executors — the results lock, resuming (an ok run_id is never submitted), the plan graph's order,
the writing of records — so a suite runs on a cluster exactly as it runs here. This module only
turns jobs into Ray tasks and streams their records back with ``ray.wait`` as they finish.

Resources per task: a run that may use a GPU (``device: auto`` or ``cuda``) on a cluster that has
GPUs asks for ``gpu_share`` of one (1 by default; 0.25 lets four small runs share a GPU) and **no
CPU slot** — Ray counts CPUs as slots, and GPU tasks that each held one would be capped by the
CPU count, not the GPUs; it uses its node's CPUs divided among the node's GPUs as torch threads.
Ray sets each task's ``CUDA_VISIBLE_DEVICES``, so ``device: auto`` is that task's GPU. Other runs
ask for ``cpus_per_run`` CPU slots and use as many threads.

What one run hands another (a teacher's logits, a ``pretrain:`` source's weights: the outputs of
:mod:`harness.run.outputs`) travels through Ray's object store, not through a disk every node
shares: a task returns its run's exported outputs beside its record, the driver keeps their
reference under the run's ``compute_key``, and a task whose run reads them receives the reference
and files the outputs in its own node's cache before the run starts, where the run finds them. A
node's cache stays node-local (``HARNESS_NODE_CACHE`` in a node's ``ray start`` environment names
it; otherwise the driver's ``--cache-dir`` path, on that node's own disk); frozen features and
other recomputable entries are never shipped. Outputs that cannot be had (lost with a node and not
reconstructed, or made in an earlier session) are recomputed by the reader, as after a cache loss.

A run lost with its worker or node (SIGKILL, Ray's memory monitor, a node gone) is retried by
Ray up to ``retries`` times, then recorded as failed with Ray's cause. Ctrl-C cancels the tasks in
flight (their runs have no record; a rerun starts them again).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.executors.base import failed_record
from harness.executors.job import Job, Runner, execute_job
from harness.records import RunRecord
from harness.run import outputs
from harness.run.options import ExecOptions
from harness.run.process import own_process

INSTALL_HINT = "--executor ray needs Ray: pip install 'transfer-harness[ray]' (or pip install 'ray>=2.9')"
# what a worker needs from the driver's environment (a Ray worker does not inherit the driver's)
FORWARDED_ENV = ("HARNESS_DATA_DIR", "HARNESS_RETAIN_FREED_MEMORY", "CUBLAS_WORKSPACE_CONFIG", "HF_HOME",
                 "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TORCH_HOME")
# a node's own cache directory, set in the environment of its `ray start` (never forwarded: it
# names that node's disk); without it a task uses the driver's cache path on its own node
NODE_CACHE_ENV = "HARNESS_NODE_CACHE"


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise HarnessError(INSTALL_HINT) from e
    return ray


def node_options(options: ExecOptions) -> ExecOptions:
    """``options`` with this node's own cache directory, when its ``ray start`` environment names one."""
    here = os.environ.get(NODE_CACHE_ENV)
    return replace(options, cache_dir=Path(here)) if here else options


def receive(given: dict[str, Any], cache_dir: Path | None) -> None:
    """File the outputs of the runs this task's run reads (references into the object store, by
    compute_key) in this node's cache, where the run looks for them. One that cannot be fetched
    (lost with its node and not reconstructed) is left out: the run recomputes it."""
    import ray

    for compute_key, ref in given.items():
        try:
            got = ray.get(ref)
        except ray.exceptions.RayError:
            continue
        if got:
            outputs.save(cache_dir, compute_key, got)


def hand_over(job: Job, record: RunRecord, cache_dir: Path | None) -> dict[str, Any] | None:
    """The outputs ``job``'s run exported (read back from this node's cache, where the run filed
    them), for the object store: None when it exported nothing or did not finish ok."""
    if not job.spec.exports or record.status != "ok":
        return None
    made = {name: outputs.load(cache_dir, job.spec.compute_key, name) for name in job.spec.exports}
    return made if all(v is not None for v in made.values()) else None


def run_task(job: Job, options: ExecOptions, threads: int, env: dict[str, str], owned: bool,
             run: Runner = execute_job, given: dict[str, Any] | None = None) -> tuple[RunRecord, dict | None]:
    """The body of one Ray task: the driver's environment and the thread count, the outputs the run
    reads (``given``), then the run. Returns its record and the outputs it exported (the task's two
    objects: the driver fetches only the record)."""
    for k, v in env.items():
        os.environ[k] = v
    # owned: the driver is the harness CLI, so its Ray workers are the harness's own processes
    own_process(threads, allocator=owned)
    options = node_options(options)
    receive(given or {}, options.cache_dir)
    record = run(job, options)
    return record, hand_over(job, record, options.cache_dir)


class RayExecutor:
    """Runs each job as a Ray task. ``address``: ``None`` starts a local instance (or uses the one
    this process already started), ``auto`` joins the cluster of this node, ``ray://host:port`` a
    remote one. ``run``: what a task does with its job (default: :func:`execute_job`)."""

    def __init__(self, options: ExecOptions, address: str | None = None, cpus_per_run: int = 1,
                 retries: int = 1, owned: bool = False, init_kwargs: dict[str, Any] | None = None,
                 run: Runner = execute_job):
        ray = self.ray = import_ray()
        self.started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=True,
                         **(init_kwargs or {}))
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise HarnessError(f"--executor ray: could not reach a Ray cluster at {address or 'a new local one'}: "
                                   f"{e}") from e
            self.started = True  # ours to shut down
        # progress bars of runs in workers would interleave in the driver's log
        self.options = replace(options, show_progress=False)
        self.cpus_per_run, self.retries, self.owned, self.run = max(0, cpus_per_run), retries, owned, run
        total = ray.cluster_resources()
        self.cpus, self.gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        # GPU runs: the node's CPUs shared among its GPUs (as a pool worker gets CPUs / workers)
        self.threads_per_gpu = max(1, int(self.cpus // self.gpus)) if self.gpus else 1
        gpu_slots = int(self.gpus) * 4 if self.gpus else 0  # up to four small runs per GPU in flight
        cpu_slots = int(self.cpus // max(1, self.cpus_per_run))
        # the driver hands over at most this many runs at once; Ray queues what does not fit yet
        self.slots = max(1, gpu_slots + cpu_slots)
        self.env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        self.task = ray.remote(run_task)
        self.pending: dict[Any, tuple[Job, Any]] = {}  # the record's ObjectRef → its job, its outputs' ObjectRef
        # compute_key → the ObjectRef of the outputs that run exported: what later runs read
        self.exported: dict[str, Any] = {}

    def resources(self, job: Job) -> dict[str, float]:
        """num_gpus / num_cpus for ``job``'s task, and its torch threads."""
        device = job.spec.train.get("device", "auto")
        if self.gpus and (device == "auto" or str(device).startswith("cuda")):
            share = float(job.spec.train.get("gpu_share", 1.0))
            return {"num_gpus": share, "num_cpus": 0,
                    "threads": max(1, math.floor(self.threads_per_gpu * share)) if share < 1 else self.threads_per_gpu}
        return {"num_gpus": 0, "num_cpus": self.cpus_per_run, "threads": max(1, self.cpus_per_run)}

    def task_options(self, job: Job) -> dict[str, Any]:
        """The Ray options of ``job``'s task (resources, retries, name; two objects: record, outputs)."""
        need = self.resources(job)
        return {"num_gpus": need["num_gpus"], "num_cpus": need["num_cpus"], "max_retries": self.retries,
                "retry_exceptions": False, "name": job.spec.run_id[:100], "num_returns": 2}

    def submit(self, job: Job) -> None:
        threads = int(self.resources(job)["threads"])
        # nested in a dict, the references are fetched by the task itself, which survives one that is lost
        given = {spec.compute_key: self.exported[spec.compute_key] for spec in job.inputs.values()
                 if spec.compute_key in self.exported}
        record, made = self.task.options(**self.task_options(job)) \
            .remote(job, self.options, threads, self.env, self.owned, self.run, given)
        self.pending[record] = (job, made)

    @property
    def running(self) -> list[str]:
        return [job.spec.run_id for job, _ in self.pending.values()]

    def next_finished(self) -> RunRecord:
        if not self.pending:
            raise RuntimeError("next_finished() with no run in flight")
        (ref,), _ = self.ray.wait(list(self.pending), num_returns=1)
        job, made = self.pending.pop(ref)
        try:
            record = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:  # the task body raised (execute records its own errors)
            return failed_record(job.spec, f"the Ray task raised: {e}"[:2000], "ExecutorError")
        except self.ray.exceptions.RayError as e:  # worker or node lost, memory monitor, cancelled
            return failed_record(job.spec, f"lost with its Ray worker after {self.retries} retr"
                                 f"{'y' if self.retries == 1 else 'ies'}: {type(e).__name__}: {e}"[:2000], "WorkerLost")
        if record.status == "ok" and job.spec.exports:  # what its readers will be handed
            self.exported.setdefault(job.spec.compute_key, made)
        return record

    def close(self) -> None:
        """Cancel what is still in flight (Ctrl-C, a driver error: those runs get no record)."""
        for ref in list(self.pending):
            with contextlib.suppress(Exception):  # already finished or gone: nothing to stop
                self.ray.cancel(ref, force=True)
        self.pending.clear()
        self.exported.clear()
        if self.started:
            self.ray.shutdown()
            self.started = False
