"""What every executor runs: a job (a resolved RunSpec with the runs it reads) and the default way
to turn it into a record. Below the driver (:mod:`harness.executors.base`) and every executor, so
each of them imports it and none imports another."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.plan import RunSpec
from harness.records import RunRecord
from harness.run.options import ExecOptions


@dataclass(frozen=True)
class Job:
    """One run to execute: its resolved spec and the resolved specs of the runs it reads."""

    spec: RunSpec
    inputs: dict[str, RunSpec] = field(default_factory=dict)


Runner = Callable[[Job, ExecOptions], RunRecord]


def execute_job(job: Job, options: ExecOptions) -> RunRecord:
    """What every executor does with a job unless told otherwise (a benchmark's timed stand-in, a
    test's planted failure): train and evaluate it."""
    from harness.run.execute import execute

    return execute(job.spec, options, job.inputs)
