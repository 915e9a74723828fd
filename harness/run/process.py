"""Becoming one of the harness's own processes: the CLI, a pool worker, a Ray task.

Process-wide settings (thread counts, quiet libraries, the host allocator) belong to processes
the harness owns, never to a program that merely imports ``harness``: nothing here runs at import,
and a variable the user already set wins (``setdefault``).
"""

from __future__ import annotations

import os
import sys
import warnings

from harness.run import alloc


def quiet_libraries() -> None:
    """Library chatter (weight-load reports, download bars) would bury the run lines. Said through
    the variables transformers and huggingface_hub read when first imported, so a process that
    never loads a text model does not import them for this (about 1 s); a user's own setting wins."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already: the variables were read before they were set
        from transformers.utils import logging as hf_logging

        if os.environ["TRANSFORMERS_VERBOSITY"] == "error":
            hf_logging.set_verbosity_error()
        if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
            hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")


def own_process(threads: int | None = None, allocator: bool = True) -> None:
    """Make this process one the harness owns.

    Args:
        threads: CPU threads for torch (a worker's share of the machine); ``None`` leaves torch's
            default and does not import torch (the CLI, before it knows it will train).
        allocator: whether a CPU run may change the host allocator (:mod:`harness.run.alloc`);
            ``False`` for a Ray task of a user's own driver, whose processes are not the harness's.
    """
    if threads is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, threads)))
    quiet_libraries()
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    if allocator:
        alloc.claim()
