"""The host allocator of a process that runs CPU training: freed memory is kept for the next step
instead of being handed back to the OS.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block over its mmap
threshold (at most 32 MiB; MiniLM's embedding gradient alone is 47 MB) with a fresh ``mmap`` and
returns it on ``free``, and trims the heap's top, so each training step re-faults its gradients and
activations page by page, zero-filled by the kernel: 32,846 minor page faults per MiniLM step of 16
sentences (``benchmarks/bench_text_step.py``). After :func:`keep_freed_memory` glibc neither maps
large blocks apart nor trims the heap, so a step reuses the last one's pages.

The setting is for the rest of the process: glibc cannot be put back as it was (any ``mallopt``
call also switches off its dynamic mmap threshold for good), so it is made once, by the first CPU
run, and never "restored"; :func:`trim` hands the free heap back to the OS after each run.
The setting belongs to processes the harness owns — its CLI and its pool and Ray workers, whose
:func:`harness.run.process.own_process` calls :func:`claim` — never to a user's process that merely
imports ``harness`` and calls ``execute``: there nothing is changed. Nothing is changed either off glibc/Linux, with
``HARNESS_RETAIN_FREED_MEMORY=0``, or when the user chose the allocator's behaviour (``MALLOC_*``/``GLIBC_TUNABLES`` variables, a preloaded
jemalloc/tcmalloc/mimalloc). CUDA tensors come from PyTorch's caching allocator and are unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import threading

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # <malloc.h>
RETAIN_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: trim only past 2 GiB of free top
ENV = "HARNESS_RETAIN_FREED_MEMORY"
# the variables by which a user sets glibc's allocator, and the allocators that replace it
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "GLIBC_TUNABLES")
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_state: str | None = None  # what the process got: "retained" | "default" | "environment"
_owned = False  # whether the harness owns this process (its CLI, a worker): see claim()
_lock = threading.Lock()


def claim() -> None:
    """Say that this process is the harness's own (the CLI, a pool or Ray worker): the allocator
    setting made for speed may then be made in it. Called by :func:`harness.run.process.own_process`."""
    global _owned
    _owned = True


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - musl and others lack it, and mallopt's meaning
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def user_chose_allocator() -> bool:
    preload = os.environ.get("LD_PRELOAD", "")
    return any(k in os.environ for k in USER_SETTINGS) or any(a in preload for a in OTHER_ALLOCATORS)


def keep_freed_memory(device_type: str = "cpu") -> str:
    """Make glibc keep freed memory for this process (once; CPU runs only). Returns what the
    process's allocator does: ``retained``, ``default`` (not applied: off, not glibc, or not a CPU
    run and never applied before; or a process the harness does not own) or ``environment`` (the
    user's own settings, left alone)."""
    global _state
    with _lock:
        if _state is not None:
            return _state
        if device_type != "cpu" or not _owned:
            return "default"
        libc = _glibc() if enabled() else None
        if libc is None:
            return "default"  # decided again by the next run: the switch may change in between
        if user_chose_allocator():
            _state = "environment"
        else:
            ok = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, RETAIN_TRIM_THRESHOLD))
            _state = "retained" if ok else "default"
        return _state


def trim() -> None:
    """Hand the heap's free memory back to the OS (after a run; the settings stay)."""
    libc = _glibc()
    if libc is not None and _state == "retained":
        libc.malloc_trim(0)
