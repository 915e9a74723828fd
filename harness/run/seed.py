"""The only code that touches global random state."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

SUBSAMPLE_SEED = 0  # subsets are the same for every run seed: seed-paired comparisons, shared caches


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed python, numpy, torch (CPU and CUDA); optionally force deterministic kernels.

    Returns the seed used. ``deterministic`` sets ``torch.use_deterministic_algorithms``,
    ``CUBLAS_WORKSPACE_CONFIG`` and the cuDNN flags; without it cuDNN may autotune.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    return seed


def determinism_state() -> dict[str, object]:
    """What is in force now (for the record): deterministic algorithms, cuDNN flags, cuBLAS workspace."""
    return {
        "algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def data_generator(seed: int) -> torch.Generator:
    """The generator that shuffles training batches (independent of model init draws)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + 17)
