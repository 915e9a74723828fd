"""The host allocator during a CPU run: freed memory is kept for the next step instead of being
handed back to the OS.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves every block over its mmap
threshold (at most 32 MiB; MiniLM's embedding gradient alone is 47 MB) with a fresh ``mmap`` and
returns it on ``free``, and trims the heap's top past 128 KiB; so each training step re-faults its
gradients and activations page by page, zero-filled by the kernel: ~27,000 page faults per MiniLM
step of 16 sentences, about a tenth of the step's CPU time (``benchmarks/bench_text_step.py``).
Inside :func:`retain_freed_memory` glibc neither maps large blocks apart nor trims the heap, so the
second step reuses the first one's pages. On leaving, the defaults come back and the heap is
trimmed, so a long-lived process does not keep the run's peak.

glibc on Linux only (elsewhere, and with ``HARNESS_RETAIN_FREED_MEMORY=0``, nothing is changed);
CUDA runs are unaffected (their tensors come from PyTorch's own caching allocator).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # <malloc.h>
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
RETAIN_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: trim only past 2 GiB of free top
ENV = "HARNESS_RETAIN_FREED_MEMORY"


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


_depth = 0  # nested uses (a run inside a run): only the outermost sets and restores
_lock = threading.Lock()


@contextlib.contextmanager
def retain_freed_memory(device_type: str = "cpu") -> Iterator[bool]:
    """Keep freed host memory for reuse while inside (CPU runs, glibc); yields whether it did."""
    global _depth
    libc = _glibc() if device_type == "cpu" and enabled() else None
    if libc is None:
        yield False
        return
    with _lock:
        _depth += 1
        applied = True
        if _depth == 1:
            applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, RETAIN_TRIM_THRESHOLD))
    try:
        yield applied
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
