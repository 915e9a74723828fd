"""One way to become a harness-owned process (`run/process.own_process`), used by the CLI, pool
workers and Ray tasks; nothing of it happens at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, os, sys
before = dict(os.environ)
import harness.cli, harness.executors.base, harness.executors.pool, harness.executors.ray_executor
from harness.run import alloc, process
imported = {"env_unchanged": dict(os.environ) == before, "owned": alloc._owned}
import torch
torch.set_num_threads(1)
process.own_process(3, allocator=sys.argv[1] == "1")
print(json.dumps({**imported, "owned_after": alloc._owned, "torch_threads": torch.get_num_threads(),
                  "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM",
                                                          "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}}))
"""


def probe(allocator: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM",
                                                             "HF_HUB_DISABLE_PROGRESS_BARS")}
    env["TRANSFORMERS_VERBOSITY"] = "info"  # the user's own setting
    out = subprocess.run([sys.executable, "-c", PROBE, "1" if allocator else "0"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_changes_nothing_and_own_process_sets_threads_quiet_and_allocator_defaults():
    got = probe(allocator=True)
    assert got["env_unchanged"] and got["owned"] is False  # importing the CLI and the executors: untouched
    assert got["owned_after"] is True and got["torch_threads"] == 3
    assert got["env"] == {"OMP_NUM_THREADS": "3", "TOKENIZERS_PARALLELISM": "false",
                          "TRANSFORMERS_VERBOSITY": "info", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # the user's wins


def test_a_ray_task_of_a_users_driver_leaves_the_allocator_alone():
    assert probe(allocator=False)["owned_after"] is False


THREADS_PROBE = """
import json, os, sys
from harness.run import process
threads = None if sys.argv[1] == "none" else int(sys.argv[1])
process.own_process(threads)  # as the CLI and a pool worker call it
torch_imported = "torch" in sys.modules
import torch
print(json.dumps({"torch_imported": torch_imported, "omp": os.environ.get("OMP_NUM_THREADS"),
                  "torch_threads": torch.get_num_threads()}))
"""


def threads_probe(threads: int | None, omp: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    out = subprocess.run([sys.executable, "-c", THREADS_PROBE, "none" if threads is None else str(threads)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_users_thread_variable_wins_and_torch_gets_the_share_it_is_given():
    """OMP_NUM_THREADS is a default (``setdefault``): the user's 2 stays 2 for the libraries that read
    it, while torch is set to the worker's share explicitly."""
    got = threads_probe(3, omp="2")
    assert got["omp"] == "2" and got["torch_threads"] == 3


def test_without_a_thread_count_torch_is_neither_imported_nor_set():
    """The CLI calls ``own_process()`` before it knows whether it will train: it imports no torch
    (about a second) and sets no thread variable of its own."""
    got = threads_probe(None, omp=None)
    assert got["torch_imported"] is False and got["omp"] is None
