"""The measured domain gap: the proxy A-distance between two domains on frozen features.

Ben-David et al. (2007, 2010) bound a classifier's target error by its source error plus the
H-divergence of the two domains; its proxy, as DANN's paper (Ganin et al. 2016, §5.1.4) measures
it, is ``PAD = 2 (1 − 2 ε)`` with ε the held-out error of a linear classifier trained to tell the
domains apart. 0: the domains cannot be told apart (no shift a linear model sees); 2: perfectly
separable. Here the classifier is L2-regularised logistic regression on standardised features,
balanced domains (the larger one subsampled), fitted on half the rows, its strength chosen on a
quarter, and ε read on the last quarter. The features are the frozen source backbone's: the gap
before any adaptation, the same for every strategy of a pair.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from harness.run.features import frozen_rows
from harness.run.logistic import fit_logistic, solver_threads

if TYPE_CHECKING:
    from harness.run.context import RunContext
    from harness.targets.base import TargetData

PAD_VERSION = 1  # bump when the estimate changes: cached gaps are recomputed
MAX_ROWS = 4000  # per domain: token features run to tens of thousands of rows
MIN_ROWS = 20
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def proxy_a_distance(source: torch.Tensor, target: torch.Tensor, seed: int = 0) -> dict[str, float | int]:
    """``{"proxy_a_distance", "domain_error", "rows_per_domain", "C"}`` for two feature matrices."""
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"the domains' features must be matrices of one width, got {tuple(source.shape)} "
                         f"and {tuple(target.shape)}")
    n = min(len(source), len(target), MAX_ROWS)
    if n < MIN_ROWS:
        raise ValueError(f"the proxy A-distance needs at least {MIN_ROWS} examples of each domain, got "
                         f"{len(source)} and {len(target)}")
    g = torch.Generator().manual_seed(seed)
    s = source[torch.randperm(len(source), generator=g)[:n]].double()
    t = target[torch.randperm(len(target), generator=g)[:n]].double()
    x = torch.cat([s, t])
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    order = torch.randperm(2 * n, generator=g)
    fit, choose, test = order[: n], order[n: n + n // 2], order[n + n // 2:]
    mean, std = x[fit].mean(0), x[fit].std(0).clamp_min(1e-6)
    x = (x - mean) / std

    def error(w: torch.Tensor, b: torch.Tensor, rows: torch.Tensor) -> float:
        return float(((x[rows] @ w.T + b).argmax(1) != y[rows]).double().mean())

    best, init = None, None
    with solver_threads(torch.device("cpu"), x[fit].numel()):
        for c in C_GRID:  # ascending: each fit starts from the last (a warm start along the path)
            init = fit_logistic(x[fit], y[fit], 2, c, max_iter=200, init=init)
            err = error(*init, choose)
            if best is None or err < best[0]:
                best = (err, c, init)
    _, c, (w, b) = best
    eps = error(w, b, test)
    return {"proxy_a_distance": round(max(0.0, 2 * (1 - 2 * eps)), 4), "domain_error": round(eps, 4),
            "rows_per_domain": n, "C": c}


def pair_gap(ctx: RunContext, backbone, data: TargetData, batch_size: int) -> dict[str, Any]:
    """The notes that record the pair's gap: ``{"domain_gap": …}`` between the labelled training
    split and the unlabeled target-domain data (``data.extra["unlabeled"]``) on the source's frozen
    features, or ``{"domain_gap_skipped": why}`` when there are too few rows (a measurement beside
    the run never fails it). Memoised under the pair's frozen features, so computed once per pair;
    timed as the ``domain_gap`` phase, which :data:`harness.run.cost.NOT_CHARGED` leaves out of the
    run's ``wall_s``: it measures the pair, it is not what the run costs."""
    def compute() -> dict:
        t0 = time.perf_counter()
        gap = proxy_a_distance(frozen_rows(backbone, data.splits["train"], ctx.device, batch_size),
                               frozen_rows(backbone, data.extra["unlabeled"], ctx.device, batch_size))
        return {**gap, "seconds": time.perf_counter() - t0}

    with ctx.phase("domain_gap"):
        try:
            stored, _ = ctx.memo("domain_gap", {"features": ctx.feature_key(data)}, compute, PAD_VERSION)
        except ValueError as e:
            return {"domain_gap_skipped": str(e)}
    return {"domain_gap": {k: v for k, v in stored.items() if k != "seconds"}}
