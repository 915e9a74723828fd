"""CPU runs make glibc keep freed host memory for the next step, once per process, unless the
user chose the allocator's behaviour."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.run import alloc
from tests.conftest import TINY_SUITE

REAL_GLIBC = alloc._glibc
glibc = pytest.mark.skipif(alloc._glibc() is None, reason="the allocator setting is glibc's (Linux)")

# a fresh process (the setting lasts for the process): page faults of allocating, filling and
# freeing 64 MiB (over glibc's largest mmap threshold), per round, before and after the setting
PROBE = """
import json, resource, sys, torch
from harness.run import alloc
def rounds(n):
    out = []
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(16 * 2**20)
        del x
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return out
default = rounds(6)
assert alloc.keep_freed_memory("cpu") == "default"  # a process that merely imports harness: untouched
from harness.run.process import own_process
own_process()  # as the CLI and the workers do
state = alloc.keep_freed_memory("cpu")
print(json.dumps({"default": default, "state": state, "kept": rounds(20)[-6:]}))
"""


def probe(env_extra: dict[str, str] | None = None) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k not in alloc.USER_SETTINGS and k != alloc.ENV}
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_after_the_setting_the_pages_of_a_freed_tensor_are_reused():
    r = probe()
    assert r["state"] == "retained"
    # the heap settles within a few rounds (each aligned block is a little larger than the freed
    # one before it, until freed neighbours merge); by default every round faults afresh
    assert sum(r["kept"]) < sum(r["default"]) / 4, r


@glibc
def test_a_users_own_allocator_settings_are_left_alone():
    r = probe({"MALLOC_ARENA_MAX": "2", "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"})
    assert r["state"] == "environment"


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, option, value):
        self.calls.append(("mallopt", option, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def fake(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(alloc, "_glibc", lambda: libc)
    monkeypatch.setattr(alloc, "_state", None)
    monkeypatch.setattr(alloc, "_owned", True)
    for k in (*alloc.USER_SETTINGS, alloc.ENV, "LD_PRELOAD"):
        monkeypatch.delenv(k, raising=False)
    return libc


def test_set_once_per_process_and_never_undone(fake):
    assert alloc.keep_freed_memory("cpu") == "retained"
    assert alloc.keep_freed_memory("cpu") == "retained"
    assert fake.calls == [("mallopt", alloc.M_MMAP_MAX, 0), ("mallopt", alloc.M_TRIM_THRESHOLD, alloc.RETAIN_TRIM_THRESHOLD)]
    alloc.trim()
    assert fake.calls[-1] == ("malloc_trim", 0)  # the free heap goes back; the options stay


@pytest.mark.parametrize("env", [{"MALLOC_MMAP_MAX_": "0"}, {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}])
def test_the_users_choice_wins(fake, monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert alloc.keep_freed_memory("cpu") == "environment"
    alloc.trim()
    assert fake.calls == []


def test_off_switch_other_devices_and_other_platforms_change_nothing(fake, monkeypatch):
    assert alloc.keep_freed_memory("cuda") == "default"
    monkeypatch.setattr(alloc, "_owned", False)  # a user's process that imports harness
    assert alloc.keep_freed_memory("cpu") == "default" and not fake.calls
    monkeypatch.setattr(alloc, "_owned", True)
    monkeypatch.setenv(alloc.ENV, "off")
    assert alloc.keep_freed_memory("cpu") == "default"
    assert fake.calls == []
    monkeypatch.setattr(sys, "platform", "darwin")
    assert REAL_GLIBC.__wrapped__() is None  # the real lookup, uncached, sees no glibc off Linux


@glibc
def test_the_record_says_what_the_allocator_does(write_suite, fake, monkeypatch):
    from harness.plan import expand
    from harness.run.execute import execute
    from harness.suite import load_suite

    spec = next(s for s in expand(load_suite(write_suite(TINY_SUITE))) if s.strategy == "linear_probe")
    monkeypatch.setenv(alloc.ENV, "off")
    assert execute(spec).config["notes"]["host_memory"] == "default"
    monkeypatch.delenv(alloc.ENV)
    assert execute(spec).config["notes"]["host_memory"] == "retained"
    assert ("malloc_trim", 0) in fake.calls  # trimmed after the run
