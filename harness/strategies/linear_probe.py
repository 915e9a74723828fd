"""``linear_probe``: a frozen backbone; only a linear head trains, on cached features.

Two solvers for the head:

* ``adamw`` (default): the generic loop trains the head over the cached features.
* ``lbfgs``: L2-regularised multinomial logistic regression, fitted to convergence by
  L-BFGS for every C in ``c_grid`` (warm-started along the grid); the C with the best
  validation score wins (Kornblith et al. 2019; the VTAB linear protocol). The strategy fits
  the head in ``adapt`` and answers ``trains_in_loop() == False``: the loop only evaluates.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.sources.base import HeadModel
from harness.strategies.base import Strategy, freeze_all_but_head


class ProbeParams(Params):
    solver: Literal["adamw", "lbfgs"] = Field("adamw", description="adamw: the loop trains the head; "
                                               "lbfgs: logistic regression with C chosen on val")
    c_grid: list[PositiveFloat] = Field(default_factory=lambda: [10.0 ** k for k in range(-4, 5)], min_length=1,
                                        description="inverse L2 strengths tried by lbfgs (sklearn's C)")
    max_iter: int = Field(300, ge=1, description="L-BFGS iterations per C")


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, max_iter: int,
                 init: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean CE + ‖W‖²/(2·C·n) (sklearn's C·ΣCE + ½‖W‖², scaled by 1/(C·n); bias unpenalised)."""
    x, y = x.double().clone(), y.clone()  # cached features may be inference tensors: autograd needs copies
    n, d = x.shape
    weight = (init[0].clone() if init else torch.zeros(num_classes, d, dtype=x.dtype, device=x.device)).requires_grad_(True)
    bias = (init[1].clone() if init else torch.zeros(num_classes, dtype=x.dtype, device=x.device)).requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-5,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y, ignore_index=-100) + weight.pow(2).sum() / (2 * c * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


SINGLE_THREAD_ELEMENTS = 1 << 24  # train features (n × d) up to which a CPU fit runs on one thread


@contextlib.contextmanager
def solver_threads(device: torch.device, elements: int):
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


def select_c(head: torch.nn.Linear, data, task, params: ProbeParams, device: torch.device) -> tuple[float, list[dict]]:
    """Fit the head for every C (ascending), keep the C with the best validation score.

    Returns (chosen C, per-C validation scores); ``head`` ends with the chosen weights.
    Ties go to the smaller C (stronger regularisation).
    """
    from harness.run.loop import evaluate

    train = data.splits["train"].tensors
    x, y = train["features"].to(device), train["labels"].to(device)
    probe = HeadModel(head).to(device)
    best, scores, init = None, [], None
    with solver_threads(device, x.numel()):
        for c in sorted(params.c_grid):
            init = fit_logistic(x, y, head.out_features, c, params.max_iter, init)
            with torch.no_grad():
                head.weight.copy_(init[0])
                head.bias.copy_(init[1])
            val = evaluate(probe, data.splits["val"], task, data.label_names, device, 4096, "fp32")
            score = float(val.get(task.primary, float("nan")))
            scores.append({"C": c, f"val_{task.primary}": score, "val_loss": val["loss"]})
            if best is None or score > best[1]:
                best = (c, score, init)
    c, _, (weight, bias) = best
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return c, scores


@STRATEGIES.register("linear_probe", description="frozen backbone; linear head on features computed once and cached")
class LinearProbe(Strategy):
    """Frozen backbone (bit-identical after the run); the head trains on cached features."""

    Params = ProbeParams

    @classmethod
    def check(cls, params, pair, suite):
        if params.solver != "lbfgs" and params.model_fields_set & {"c_grid", "max_iter"}:
            return ["c_grid and max_iter apply to solver: lbfgs only"]
        return []

    def prepare(self, model):
        freeze_all_but_head(model)

    def trains_in_loop(self):
        return self.params.solver != "lbfgs"

    def adapt(self, model, data, ctx):
        from harness.registry import TASKS
        from harness.run.features import cached_features

        source = {k: v for k, v in ctx.source.items() if k != "head_init"}  # the features do not depend on it
        key = {"source": source, "target": ctx.target, "split": data.split_info,
               "preprocessing": data.preprocessing, "sizes": {k: len(s) for k, s in data.splits.items()}}
        with ctx.phase("feature"):
            feats, hit = cached_features(model.backbone.to(ctx.device), data, key, ctx.cache_dir, ctx.device,
                                         batch_size=max(64, self.train.eval_batch_size or 2 * self.train.batch_size),
                                         show_progress=ctx.show_progress)
        ctx.notes["feature_cache_hit"] = hit
        if self.params.solver == "lbfgs":
            with ctx.phase("train"):
                c, scores = select_c(model.head, feats, TASKS.get(ctx.target["task"]), self.params, ctx.device)
            ctx.notes["lbfgs"] = {"chosen_C": c, "scores": scores}
        return HeadModel(model.head), feats
