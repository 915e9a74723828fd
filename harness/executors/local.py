"""The in-process executor: one run at a time, in this process (the default of
:func:`harness.executors.base.run_plan`)."""

from __future__ import annotations

from collections import deque

from harness.executors.job import Job, Runner, execute_job
from harness.records import RunRecord
from harness.run.options import ExecOptions


class LocalExecutor:
    """Runs each job when the driver asks for the next finished one."""

    slots = 1

    def __init__(self, options: ExecOptions, run: Runner = execute_job):
        self.options, self.run = options, run
        self.queue: deque[Job] = deque()

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def next_finished(self) -> RunRecord:
        job = self.queue.popleft()
        return self.run(job, self.options)

    def close(self) -> None:
        self.queue.clear()
