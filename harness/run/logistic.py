"""L2-regularised multinomial logistic regression by L-BFGS: the closed-form probe's head (a C
chosen on validation, then refitted on train + val) and the domain classifier of the measured
domain gap (:mod:`harness.run.domain_gap`) both fit it here.

The protocol is Kornblith, Shlens & Le (2019), "Do Better ImageNet Models Transfer Better?":
fitted to convergence for each inverse strength C of a grid, warm-started along it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from harness.run.loop import evaluate
from harness.sources.nets import HeadModel
from harness.targets.base import TargetData
from harness.tasks import Task


def objective(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, c: float) -> torch.Tensor:
    """What :func:`fit_logistic` minimises: mean CE + ‖W‖²/(2·C·n), ``n`` the rows of ``x``."""
    return F.cross_entropy(x @ weight.T + bias, y, ignore_index=-100) + weight.pow(2).sum() / (2 * c * len(x))


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, max_iter: int,
                 init: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean CE + ‖W‖²/(2·C·n) (sklearn's C·ΣCE + ½‖W‖², scaled by 1/(C·n); bias unpenalised)."""
    x, y = x.double().clone(), y.clone()  # cached features may be inference tensors: autograd needs copies
    d = x.shape[1]
    weight = (init[0].clone() if init else torch.zeros(num_classes, d, dtype=x.dtype, device=x.device)).requires_grad_(True)
    bias = (init[1].clone() if init else torch.zeros(num_classes, dtype=x.dtype, device=x.device)).requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-5,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective(x, y, weight, bias, c)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


SINGLE_THREAD_ELEMENTS = 1 << 24  # train features (n × d) up to which a CPU fit runs on one thread


@contextlib.contextmanager
def solver_threads(device: torch.device, elements: int) -> Iterator[None]:
    """Run a small CPU fit on one intra-op thread, restored afterwards.

    L-BFGS on a probe is thousands of tiny ops; extra threads only add synchronisation, which
    costs a scheduler slice per op on a busy machine (measured: 96×1280 features, 100
    iterations, 2 busy cores: 14.6 s with 2 threads, 0.2 s with 1).
    """
    if device.type != "cpu" or elements > SINGLE_THREAD_ELEMENTS:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class GridParams(Protocol):
    """What :func:`select_c` reads of a probe's params."""

    c_grid: Sequence[float]
    max_iter: int
    refit: bool


Validate = Callable[[], dict[str, Any]]  # the head as it stands → {"validators": {…}, "test": score}


def fit_path(x: torch.Tensor, y: torch.Tensor, num_classes: int, grid, max_iter: int):
    """The probe's regularisation path: one fit per C of ``grid`` in ascending order, each started
    from the last (warm start); yields ``(C, (weight, bias))``."""
    init = None
    for c in sorted(grid):
        init = fit_logistic(x, y, num_classes, c, max_iter, init)
        yield c, init


def select_c(head: torch.nn.Linear, data: TargetData, task: Task, params: GridParams,
             device: torch.device, validate: Validate | None = None,
             select_by: str = "oracle") -> tuple[float, list[dict], dict]:
    """Fit the head for every C (ascending), keep the C with the best validation score, then
    (``refit``) fit it again on train + val with that C.

    With ``validate`` (a pair with unlabeled target data: the probe's label-free validators), every
    C's row also holds what it returns, the validators' scores and the test score, and
    ``select_by`` names the score that chooses (``oracle``: the validation split's primary metric;
    otherwise a validator, higher = better).

    Returns (chosen C, per-C validation scores, the validation metrics of the chosen C before the
    refit); ``head`` ends with the final weights. Ties go to the smaller C (stronger regularisation).
    """
    train, val = data.splits["train"].tensors, data.splits["val"].tensors
    x, y = train["features"].to(device), train["labels"].to(device)
    probe = HeadModel(head).to(device)
    best, scores = None, []
    with solver_threads(device, x.numel()):
        for c, init in fit_path(x, y, head.out_features, params.c_grid, params.max_iter):
            with torch.no_grad():
                head.weight.copy_(init[0])
                head.bias.copy_(init[1])
            metrics = evaluate(probe, data.splits["val"], task, data.label_names, device, 4096, "fp32")
            score = float(metrics.get(task.primary, float("nan")))
            row = {"C": c, f"val_{task.primary}": score, "val_loss": metrics["loss"]}
            if validate is not None:
                row.update(validate())
                row["validators"]["oracle"] = round(score, 6)
            scores.append(row)
            by = score if select_by == "oracle" else (row.get("validators") or {}).get(select_by)
            if by is not None and not math.isnan(by) and (best is None or by > best[1]):
                best = (c, by, init, metrics)
        if best is None:
            raise ValueError(f"select_by: {select_by} scored no C of the probe's grid (it needs unlabeled "
                             "target data, and source_val and dev a labelled validation split of the source domain)")
        c, _, (weight, bias), chosen_val = best
        if params.refit:
            xa = torch.cat([x, val["features"].to(device)])
            ya = torch.cat([y, val["labels"].to(device)])
            weight, bias = fit_logistic(xa, ya, head.out_features, c, params.max_iter, (weight, bias))
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return c, scores, chosen_val
