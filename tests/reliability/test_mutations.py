"""The guards are guarded: each break a test was written to catch (issue 29) is planted in a copy of
the package, only the tests that guard it run against the copy, and they must fail.

A mutation is a text substitution located by a snippet that must occur exactly once in its file:
when a refactor moves or rewrites the code, the check fails saying which snippet it lost, instead
of silently planting nothing. Each case starts a fresh interpreter (torch imports included), so
the check takes minutes: marked ``slow``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

DOMAIN = "tests/unit/test_strategies_domain.py"
BACKBONE = f"{DOMAIN}::test_the_extra_loss_alone_moves_the_backbone"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    edits: tuple[tuple[str, str], ...]  # (snippet, replacement): each snippet occurs exactly once
    guards: tuple[str, ...]  # the test node ids that must catch it

    def __str__(self) -> str:
        return self.name


MUTATIONS = [
    Mutation("coral discrepancy detached", "harness/strategies/coral.py",
             (("        return coral_loss(source, target)", "        return coral_loss(source.detach(), target.detach())"),),
             (f"{BACKBONE}[cnn-coral]",)),
    Mutation("mmd discrepancy detached", "harness/strategies/mmd.py",
             (("        return mmd2(source, target, ", "        return mmd2(source.detach(), target.detach(), "),),
             (f"{BACKBONE}[cnn-mmd]",)),
    Mutation("alignment's unlabeled side detached", "harness/strategies/domain.py",
             (("        loss = self.discrepancy(source.float(), target.float())",
               "        loss = self.discrepancy(source.float(), target.float().detach())"),),
             (f"{DOMAIN}::test_the_discrepancy_flows_through_both_domains[coral]",)),
    Mutation("dann's reversal cut from the backbone", "harness/strategies/dann.py",
             (("self.domain_classifier(grad_reverse(both, lambd))", "self.domain_classifier(grad_reverse(both.detach(), lambd))"),),
             (f"{BACKBONE}[cnn-dann]",)),
    Mutation("contrastive loss on detached features", "harness/strategies/contrastive.py",
             (('        a, ya = rows(out["features"], batch)', '        a, ya = rows(out["features"].detach(), batch)'),),
             (f"{BACKBONE}[cnn-contrastive]",)),
    Mutation("importance weights applied to detached logits", "harness/strategies/importance_weighting.py",
             (('        return weighted_extra(out["logits"], batch["labels"], w)',
               '        return weighted_extra(out["logits"].detach(), batch["labels"], w)'),),
             (f"{BACKBONE}[cnn-importance_weighting]",)),
    Mutation("pretrain leak check skips val", "harness/run/execute.py",
             (('    for split in ("val", "test"):\n        held =', '    for split in ("test",):\n        held ='),),
             ("tests/unit/test_pretrain.py::test_a_pretrain_leak_into_either_held_out_split_alone_is_refused",)),
    Mutation("unlabeled-domain leak check skips val", "harness/targets/domains.py",
             (('        for k in ("val", "test"):\n            shared =', '        for k in ("test",):\n            shared ='),),
             ("tests/unit/test_target_domains.py::test_unlabeled_data_holding_either_held_out_split_is_a_leak",)),
    Mutation("CIFAR unpickler admits any numpy global", "harness/targets/vision/cifar.py",
             (("        if allowed is None:\n", "        if allowed is None and module.split('.')[0] != 'numpy':\n"),
              ("        return allowed()\n",
               "        return allowed() if allowed else getattr(__import__('importlib').import_module(module), name)\n")),
             ("tests/reliability/test_security.py::test_a_cifar_batch_calling_a_numpy_gadget_is_refused_and_a_real_one_loads",)),
    Mutation("paired gate needs 3 shared seeds", "harness/report/compare.py",
             (("    if len(shared) >= 2:\n        d = [new[s] - base[s]", "    if len(shared) >= 3:\n        d = [new[s] - base[s]"),),
             ("tests/unit/test_compare.py::test_two_shared_seeds_are_decided_by_the_paired_test",)),
    Mutation("gate threshold one degree of freedom off", "harness/report/compare.py",
             (("t975(n - 1) * sd / math.sqrt(n)), \"paired\"", "t975(n) * sd / math.sqrt(n)), \"paired\""),),
             ("tests/unit/test_compare.py::test_the_gate_threshold_calls_a_change_exactly_when_the_paired_t_test_does",)),
    Mutation("confidence interval one degree of freedom off", "harness/report/stats.py",
             (("Summary(n, mean, std, t975(n - 1) * std / math.sqrt(n))", "Summary(n, mean, std, t975(n) * std / math.sqrt(n))"),),
             ("tests/unit/test_stats.py::test_paired_test_agrees_with_scipy",)),
    Mutation("pool workers outlive their driver", "harness/executors/pool.py",
             (("    _die_with_driver(lifeline)\n", "    pass\n"),),
             ("tests/reliability/test_interrupt.py::test_a_dead_driver_takes_its_pool_with_it_however_long_the_run[SIGKILL]",)),
    # the request stays fractional (what the old packing test asserted); only the tasks run whole GPUs
    Mutation("Ray tasks given whole GPUs whatever their gpu_share", "harness/executors/ray_executor.py",
             (('{"num_gpus": need["num_gpus"], "num_cpus"', '{"num_gpus": math.ceil(need["num_gpus"]), "num_cpus"'),),
             ("tests/integration/test_ray.py::test_a_gpu_share_packs_small_runs_onto_one_gpu",)),
    Mutation("Ray readers not handed the outputs they read", "harness/executors/ray_executor.py",
             (("        given = {spec.compute_key:", "        given = {} and {spec.compute_key:"),),
             ("tests/integration/test_ray_cluster.py::"
              "test_the_plans_edges_travel_through_the_object_store_between_node_local_caches",)),
]


def copy_repository(dest: Path) -> Path:
    """The package, the tests and the pytest settings, without caches: what a guard's run needs."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("harness", "tests"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def plant(root: Path, mutation: Mutation) -> None:
    path = root / mutation.file
    assert path.is_file(), f"{mutation}: {mutation.file} is gone; point the mutation at where the code moved"
    text = path.read_text()
    for snippet, replacement in mutation.edits:
        found = text.count(snippet)
        assert found == 1, (f"{mutation}: the snippet {snippet!r} occurs {found} times in {mutation.file} "
                            "(once expected); the code changed: update the mutation")
        text = text.replace(snippet, replacement)
    path.write_text(text)


def run_tests(root: Path, nodes: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Run ``nodes`` with the copy's package first on the path (its folder is also the working
    directory, so ``import harness`` cannot reach the checkout's)."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", *nodes, "-q", "-x", "-p", "no:cacheprovider"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)


def test_the_guards_pass_on_the_unmutated_copy_which_is_what_they_import(tmp_path):
    """The control: every guard passes on an untouched copy, and the copy is the package imported,
    so that a failure below is the mutation's doing."""
    root = copy_repository(tmp_path / "repo")
    env = {**os.environ, "PYTHONPATH": str(root)}
    where = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).resolve() == (root / "harness" / "__init__.py").resolve(), where
    nodes = tuple(dict.fromkeys(node for m in MUTATIONS for node in m.guards))
    out = run_tests(root, nodes)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=str)
def test_a_planted_break_fails_its_guard(tmp_path, mutation):
    root = copy_repository(tmp_path / "repo")
    plant(root, mutation)
    out = run_tests(root, mutation.guards)
    text = out.stdout + out.stderr
    # exit 1: tests ran and failed (2 or more would be a collection error: nothing was tested)
    assert out.returncode == 1, f"{mutation} went uncaught (exit {out.returncode}):\n{text[-4000:]}"
    assert "FAILED " in text and any(node.split("::")[-1].split("[")[0] in text for node in mutation.guards), text[-4000:]


def test_a_lost_snippet_is_named_not_planted_silently(tmp_path):
    root = copy_repository(tmp_path / "repo")
    gone = Mutation("nothing", "harness/report/stats.py", (("no such code anywhere", "x"),), ())
    with pytest.raises(AssertionError, match="occurs 0 times in harness/report/stats.py"):
        plant(root, gone)
