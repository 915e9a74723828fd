"""CPU runs keep freed host memory for the next step (glibc), and hand it back afterwards."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from harness.run import alloc
from tests.conftest import TINY_SUITE

BIG = 16 * 2**20  # 64 MiB of float32: over glibc's largest mmap threshold, so mmap'd by default

glibc = pytest.mark.skipif(alloc._glibc() is None, reason="the allocator setting is glibc's (Linux)")


def faults_per_round(rounds: int) -> list[int]:
    """Minor page faults of allocating, filling and freeing 64 MiB, per round."""
    out = []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(BIG)
        del x
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return out


@glibc
def test_inside_the_pages_of_a_freed_tensor_are_reused_and_outside_they_are_not():
    with alloc.retain_freed_memory("cpu") as retained:
        assert retained is True
        # the heap settles within a few rounds (each aligned block is a little larger than the
        # freed one before it, until freed neighbours merge)
        inside = faults_per_round(20)[-6:]
    outside = faults_per_round(6)  # defaults back: every round maps (and faults) its pages afresh
    pages = BIG * 4 // resource.getpagesize()
    assert min(inside) < pages // 10, inside
    assert sum(inside) < sum(outside) / 4, (inside, outside)


@glibc
def test_a_nested_use_leaves_the_outer_one_in_force():
    with alloc.retain_freed_memory("cpu"):
        with alloc.retain_freed_memory("cpu") as inner:
            assert inner is True
        faults_per_round(14)
        after_inner = faults_per_round(6)  # still retained: the inner exit restored nothing
    outside = faults_per_round(6)
    assert sum(after_inner) < sum(outside) / 4, (after_inner, outside)


@pytest.mark.parametrize("device_type", ["cuda", "meta"])
def test_other_devices_keep_the_default_allocator(device_type):
    with alloc.retain_freed_memory(device_type) as retained:
        assert retained is False


def test_the_environment_turns_it_off(monkeypatch):
    monkeypatch.setenv(alloc.ENV, "0")
    with alloc.retain_freed_memory("cpu") as retained:
        assert retained is False
    monkeypatch.setenv(alloc.ENV, "1")
    assert alloc.enabled() is True


def test_not_glibc_means_nothing_is_touched(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert alloc._glibc() is None
    with alloc.retain_freed_memory("cpu") as retained:
        assert retained is False


@glibc
def test_the_record_says_whether_host_memory_was_retained(write_suite, monkeypatch):
    from harness.config.load import load_suite
    from harness.plan import expand
    from harness.run.execute import execute

    spec = next(s for s in expand(load_suite(write_suite(TINY_SUITE))) if s.strategy == "linear_probe")
    assert execute(spec).config["notes"]["host_memory"] == "retained"
    monkeypatch.setenv(alloc.ENV, "off")
    assert execute(spec).config["notes"]["host_memory"] == "default"
