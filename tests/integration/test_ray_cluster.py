"""The Ray executor on a real two-node cluster without shared storage (issue 29): each node has its
own cache directory (``HARNESS_NODE_CACHE`` in its raylet's environment), so what one run hands
another — a ``pretrain:`` source's weights, a distillation teacher's logits — can only travel
through Ray's object store. The records equal the local executor's; a node removed mid-suite has
its run retried on the other node and recorded once."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from harness.executors.base import run_plan
from harness.executors.job import Job, execute_job
from harness.plan import PRETRAIN_EXPORT, expand
from harness.run import outputs
from harness.run.execute import ExecOptions
from harness.suite import load_suite
from tests.integration.test_pool import outcome
from tests.unit.test_recovered_inputs import SUITE  # pretrain (exports weights) → teacher → student

ray = pytest.importorskip("ray", reason="the Ray executor's tests need `pip install 'transfer-harness[ray]'`")
from ray.cluster_utils import Cluster  # noqa: E402
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

from harness.executors.ray_executor import NODE_CACHE_ENV, RayExecutor  # noqa: E402

# about 45 s on 2 CPUs (three raylets, a torch import per task): in the default run, which is what
# guards that the plan's edges need no shared disk
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head that runs nothing and two one-CPU nodes, "a" and "b", each with a cache of its own."""
    root = tmp_path_factory.mktemp("nodes")
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = {name: made.add_node(num_cpus=1, env_vars={NODE_CACHE_ENV: str(root / name)}) for name in "ab"}
    ray.init(address=made.address, include_dashboard=False, log_to_driver=False)
    yield made, nodes, root
    ray.shutdown()
    made.shutdown()


class Placed(RayExecutor):
    """Each run on the node ``where`` names for its strategy (soft: elsewhere when that node is gone),
    so that every edge of the plan crosses nodes deterministically."""

    def __init__(self, options: ExecOptions, node_ids: dict[str, str], where: dict[str, str], **kwargs):
        super().__init__(options, **kwargs)
        self.node_ids, self.where = node_ids, where

    def task_options(self, job: Job) -> dict:
        node = self.node_ids[self.where[job.spec.strategy]]
        return {**super().task_options(job), "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)}


def observed(job: Job, options: ExecOptions):
    """A run that first notes where it runs and which outputs its node's cache holds as it starts."""
    here = Path(options.cache_dir)
    (here / "started").mkdir(parents=True, exist_ok=True)
    held = sorted(p.name for p in (here / "outputs").glob("*.pt"))
    (here / "started" / f"{job.spec.run_id}.json").write_text(json.dumps({"outputs": held}))
    return execute_job(job, options)


def held_on_b(job: Job, options: ExecOptions):
    """The teacher never finishes on node "b" (the node is removed while it runs)."""
    if job.spec.strategy == "full_finetune" and os.environ.get(NODE_CACHE_ENV, "").endswith("b"):
        Path(options.cache_dir).mkdir(parents=True, exist_ok=True)
        (Path(options.cache_dir) / "teacher.held").write_text(str(os.getpid()))
        time.sleep(600)
    return execute_job(job, options)


def local_records(runs, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each task: one CPU slot, one thread
    try:
        return {r.run_id: r for r in run_plan(runs, tmp_path / "local", ExecOptions(cache_dir=tmp_path / "lc")).done}
    finally:
        torch.set_num_threads(threads)


def entry(cache: Path, spec, name: str) -> str:
    return outputs.path(cache, spec.compute_key, name).name


def test_the_plans_edges_travel_through_the_object_store_between_node_local_caches(cluster, write_suite, tmp_path):
    _, nodes, root = cluster
    runs = expand(load_suite(write_suite(SUITE)))
    by = {r.strategy: r for r in runs}
    assert set(by) == {"scratch", "full_finetune", "distill"}  # the pretrain, the teacher, the student
    local = local_records(runs, tmp_path)
    driver = ExecOptions(cache_dir=tmp_path / "driver-cache")  # the driver's path: no node uses it
    executor = Placed(driver, {n: node.node_id for n, node in nodes.items()},
                      {"scratch": "a", "full_finetune": "b", "distill": "a"}, run=observed)
    done = {r.run_id: r for r in run_plan(runs, tmp_path / "ray", driver, executor=executor).done}
    assert all(r.status == "ok" for r in done.values()), [r.error for r in done.values() if r.status != "ok"]
    assert {i: outcome(r) for i, r in done.items()} == {i: outcome(r) for i, r in local.items()}

    def started(node: str, spec) -> list[str]:
        return json.loads((root / node / "started" / f"{spec.run_id}.json").read_text())["outputs"]

    pre, teacher, student = by["scratch"], by["full_finetune"], by["distill"]
    # node b ran nothing before the teacher: the pretrain's weights reached its cache from node a's run
    assert started("b", teacher) == [entry(root / "b", pre, PRETRAIN_EXPORT)]
    # and the teacher's logits came back from node b to node a for the student
    assert entry(root / "a", teacher, "train_logits") in started("a", student)
    assert entry(root / "a", pre, PRETRAIN_EXPORT) in started("a", student)
    assert not (root / "a" / "started" / f"{teacher.run_id}.json").exists()  # it ran on b only
    assert done[student.run_id].config["notes"]["teacher"]["recomputed"] is False
    assert not (tmp_path / "driver-cache").exists()  # nothing went through the driver's disk


def test_a_node_removed_mid_suite_has_its_run_retried_on_the_other_node_and_recorded_once(
        cluster, write_suite, tmp_path):
    made, nodes, root = cluster
    runs = expand(load_suite(write_suite(SUITE.replace("seeds: [0]", "seeds: [1]"))))  # not the test above's
    local = local_records(runs, tmp_path)
    driver = ExecOptions(cache_dir=tmp_path / "driver-cache")
    # the pretrain finishes on b (its weights in b's cache and object store), the teacher is held on b
    executor = Placed(driver, {n: node.node_id for n, node in nodes.items()},
                      {"scratch": "b", "full_finetune": "b", "distill": "a"}, run=held_on_b, retries=1)
    held = root / "b" / "teacher.held"

    def remove_b():
        deadline = time.monotonic() + 300
        while not held.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        made.remove_node(nodes["b"])

    remover = threading.Thread(target=remove_b, daemon=True)
    remover.start()
    try:
        done = run_plan(runs, tmp_path / "ray", driver, executor=executor).done
    finally:
        remover.join(timeout=400)
    assert held.exists()  # the teacher did start on b, and b went away under it
    assert all(r.status == "ok" for r in done), [r.error for r in done if r.status != "ok"]
    assert sorted(r.run_id for r in done) == sorted(r.run_id for r in runs)  # each recorded once
    files = [json.loads(f.read_text())["run_id"] for f in (tmp_path / "ray").glob("*.json")]
    assert sorted(files) == sorted(r.run_id for r in runs)
    assert {r.run_id: outcome(r) for r in done} == {i: outcome(r) for i, r in local.items()}
    teacher = next(r for r in runs if r.strategy == "full_finetune")
    assert (root / "a" / "outputs" / entry(root / "a", teacher, "train_logits")).exists()  # retried on a
