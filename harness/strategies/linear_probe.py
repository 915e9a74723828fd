"""``linear_probe``: a frozen backbone; only a linear head trains, on cached features.

Two solvers for the head:

* ``lbfgs`` (default): the protocol of Kornblith, Shlens & Le (2019), "Do Better ImageNet Models
  Transfer Better?": L2-regularised multinomial logistic regression fitted to convergence by
  L-BFGS for each of 45 inverse strengths C log-spaced from 1e-6 to 1e5 (warm-started along the
  grid), the C with the best validation score chosen, then the head refitted on train + val with
  that C. The strategy fits the head in ``adapt`` and answers ``trains_in_loop() == False``: the
  loop only evaluates; the validation metrics reported are those of the chosen C *before* the
  refit (after it, val is training data).
* ``adamw``: the generic loop trains the head over the cached features (lr, epochs, … apply).
"""

from __future__ import annotations

import contextlib
import time
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.sources.base import HeadModel
from harness.strategies.base import Strategy, freeze_all_but_head


def kornblith_grid() -> list[float]:
    """Kornblith et al.'s 45 values of C, log-spaced from 1e-6 to 1e5."""
    return [float(f"{10 ** (-6 + 11 * i / 44):.6g}") for i in range(45)]


class ProbeParams(Params):
    solver: Literal["adamw", "lbfgs"] = Field("lbfgs", description="lbfgs: logistic regression with C chosen on val, "
                                               "refitted on train + val (Kornblith et al. 2019); adamw: the loop trains the head")
    c_grid: list[PositiveFloat] = Field(default_factory=kornblith_grid, min_length=1,
                                        description="inverse L2 strengths tried by lbfgs (sklearn's C; default: "
                                        "45 values log-spaced from 1e-6 to 1e5)")
    max_iter: int = Field(300, ge=1, description="L-BFGS iterations per C")
    refit: bool = Field(True, description="lbfgs: refit the head on train + val with the chosen C (never when val "
                        "is in another domain than train: its labels are the target domain's)")


PROBE_FIT_VERSION = 1  # bump when the fit changes: cached heads are refitted

# what the L-BFGS probe never reads: it fits to convergence on all the cached features at once
LBFGS_UNUSED = frozenset({"epochs", "batch_size", "lr", "weight_decay", "optimizer", "momentum", "scheduler",
                          "warmup_ratio", "grad_accum", "max_grad_norm", "eval_every", "patience", "max_steps",
                          "compile", "channels_last", "group_by_length"})


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


def select_c(head: torch.nn.Linear, data, task, params: ProbeParams,
             device: torch.device) -> tuple[float, list[dict], dict]:
    """Fit the head for every C (ascending), keep the C with the best validation score, then
    (``refit``) fit it again on train + val with that C.

    Returns (chosen C, per-C validation scores, the validation metrics of the chosen C before the
    refit); ``head`` ends with the final weights. Ties go to the smaller C (stronger regularisation).
    """
    from harness.run.loop import evaluate

    train, val = data.splits["train"].tensors, data.splits["val"].tensors
    x, y = train["features"].to(device), train["labels"].to(device)
    probe = HeadModel(head).to(device)
    best, scores, init = None, [], None
    with solver_threads(device, x.numel()):
        for c in sorted(params.c_grid):
            init = fit_logistic(x, y, head.out_features, c, params.max_iter, init)
            with torch.no_grad():
                head.weight.copy_(init[0])
                head.bias.copy_(init[1])
            metrics = evaluate(probe, data.splits["val"], task, data.label_names, device, 4096, "fp32")
            score = float(metrics.get(task.primary, float("nan")))
            scores.append({"C": c, f"val_{task.primary}": score, "val_loss": metrics["loss"]})
            if best is None or score > best[1]:
                best = (c, score, init, metrics)
        c, _, (weight, bias), chosen_val = best
        if params.refit:
            xa = torch.cat([x, val["features"].to(device)])
            ya = torch.cat([y, val["labels"].to(device)])
            weight, bias = fit_logistic(xa, ya, head.out_features, c, params.max_iter, (weight, bias))
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return c, scores, chosen_val


@STRATEGIES.register("linear_probe", description="frozen backbone; linear head on features computed once and cached")
class LinearProbe(Strategy):
    """Frozen backbone (bit-identical after the run); the head trains on cached features."""

    Params = ProbeParams

    def __init__(self, params, train):
        super().__init__(params, train)
        self.selection_val: dict | None = None

    @classmethod
    def check(cls, params, pair, suite):
        from harness.targets.naming import evaluated_elsewhere

        if params.solver != "lbfgs" and params.model_fields_set & {"c_grid", "max_iter", "refit"}:
            return ["c_grid, max_iter and refit apply to solver: lbfgs only"]
        if "refit" in params.model_fields_set and params.refit and evaluated_elsewhere(pair.target.params):
            return [f"refit: true would fit the head on this pair's validation split, which is in the evaluated "
                    f"domain with its labels (eval_domain: {pair.target.params['eval_domain']}): the probe would "
                    "train on target-domain labels. Leave refit unset (off for such pairs)"]
        return []

    @classmethod
    def unused_keys(cls, params):
        return LBFGS_UNUSED if params.solver == "lbfgs" else frozenset()

    def held_out_val(self):
        return self.selection_val

    def prepare(self, model):
        freeze_all_but_head(model)

    def trains_in_loop(self):
        return self.params.solver != "lbfgs"

    def adapt(self, model, data, ctx):
        from harness.run.features import cached_features, frozen_key
        from harness.targets.naming import evaluated_elsewhere

        if self.params.refit and evaluated_elsewhere(ctx.target):
            # val is the evaluated domain's, labels and all: choose C there (as every cell chooses on
            # val), but never fit on it
            self.params = self.params.model_copy(update={"refit": False})

        pretrained = ctx.inputs.get("pretrain")  # the run whose weights this source loaded
        key = frozen_key(ctx.source, ctx.target, data, ctx.seed, pretrained.run_id if pretrained else None)
        with ctx.phase("feature"):
            feats, reused = cached_features(model.backbone.to(ctx.device), data, key, ctx.cache_dir, ctx.device,
                                            batch_size=max(64, self.train.eval_batch_size or 2 * self.train.batch_size),
                                            show_progress=ctx.show_progress)
        ctx.notes["feature_cache_hit"] = reused is not None
        if reused is not None:
            ctx.reused_s["feature"] = reused
        if "unlabeled" in data.extra:
            with ctx.phase("domain_gap"):  # a measurement of the pair, not the probe's cost (cost.NOT_CHARGED)
                try:
                    ctx.notes["domain_gap"] = self.domain_gap(model, data, key, ctx)
                except ValueError as e:  # a measurement beside the run: too few rows never fails the probe
                    ctx.notes["domain_gap_skipped"] = str(e)
        feats, key = self.transform(model, data, feats, key, ctx)
        if self.params.solver == "lbfgs":
            with ctx.phase("train"):
                fit_hit = self.fit_head(model.head, feats, key, ctx)
            c, scores = self.fit["c"], self.fit["scores"]
            grid = sorted(self.params.c_grid)
            ctx.notes["lbfgs"] = {"chosen_C": c, "scores": scores, "refit_on_train_val": self.params.refit,
                                  "at_grid_edge": len(grid) > 2 and c in (grid[0], grid[-1]), "fit_cache_hit": fit_hit}
        return HeadModel(model.head), feats

    def domain_gap(self, model, data, feature_key: dict, ctx) -> dict:
        """The proxy A-distance between the labelled training split and the unlabeled target-domain
        data on the frozen backbone's features (:mod:`harness.run.domain_gap`): how far the shift
        is before any adaptation. Cached with the features' key, so computed once per pair; its
        time is recorded as ``cost.domain_gap_s`` and left out of the probe's ``wall_s``: it
        measures the pair, it is not what the probe costs."""
        from harness.run import cache
        from harness.run.domain_gap import PAD_VERSION, frozen_rows, proxy_a_distance
        from harness.run.features import feature_key as features_id

        path = cache.entry(ctx.cache_dir, "domain_gap", cache.key({"features": features_id(feature_key)}, PAD_VERSION))

        def compute() -> dict:
            t0 = time.perf_counter()
            bs = max(64, self.train.eval_batch_size or 2 * self.train.batch_size)
            backbone = model.backbone.to(ctx.device)
            gap = proxy_a_distance(frozen_rows(backbone, data.splits["train"], ctx.device, bs),
                                   frozen_rows(backbone, data.extra["unlabeled"], ctx.device, bs))
            return {**gap, "seconds": time.perf_counter() - t0}

        stored, _ = cache.load_or_compute(path, compute)
        return {k: v for k, v in stored.items() if k != "seconds"}

    def transform(self, model, data, feats, key: dict, ctx):
        """The cached features as the head sees them, and the key of what they are (a subclass
        maps them: subspace alignment); by default unchanged."""
        return feats, key

    def fit_head(self, head, feats, feature_key: dict, ctx) -> bool:
        """The L-BFGS head: it depends on the features and the solver's params only (it starts from
        zeros, not from the seeded head), so every seed's run reuses the first one's fit from the
        cache. Returns whether it came from there."""
        from harness.registry import TASKS
        from harness.run import cache
        from harness.run.features import feature_key as features_id

        path = cache.entry(ctx.cache_dir, "probe_fits", cache.key({"features": features_id(feature_key),
                                                                   "params": self.params.model_dump(mode="json")},
                                                                  PROBE_FIT_VERSION))

        def compute() -> dict:
            import json

            t0 = time.perf_counter()
            c, scores, val = select_c(head, feats, TASKS.get(ctx.target["task"]), self.params, ctx.device)

            def plain(x):  # metrics hold numpy scalars; the cache loads plain Python only
                return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))

            return {"weight": head.weight.detach().cpu(), "bias": head.bias.detach().cpu(), "c": c,
                    "scores": plain(scores), "val": plain(val), "seconds": time.perf_counter() - t0}

        stored, hit = cache.load_or_compute(path, compute)
        if hit:  # another seed's run fitted it: the same head
            with torch.no_grad():
                head.weight.copy_(stored["weight"])
                head.bias.copy_(stored["bias"])
            ctx.reused_s["fit"] = float(stored.get("seconds", 0.0))
        self.fit, self.selection_val = stored, stored["val"]
        return hit
