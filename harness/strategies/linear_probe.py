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

The features come from the run's context (``ctx.features``: the frozen-feature cache), the fit from
:mod:`harness.run.logistic` through it, and the fitted head is memoised there (``ctx.memo``). On a
pair with unlabeled target-domain data the runner also records the pair's domain gap in a probe's
record (``records_domain_gap``).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field, PositiveFloat, model_serializer

from harness.config.schema import Params
from harness.registry import STRATEGIES
from harness.strategies.base import Strategy, freeze_all_but_head

if TYPE_CHECKING:
    import torch


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
    select_by: Literal["oracle", "source_val", "dev", "entropy", "snd"] = Field(
        "oracle", description="lbfgs: what chooses C — oracle: the validation split (the evaluated domain's, "
        "labels and all); source_val, dev, entropy, snd: a validator that reads no target label (a pair with "
        "unlabeled: data; docs/strategies.md, Choosing hyperparameters without target labels)")

    @model_serializer(mode="wrap")
    def _without_default_select_by(self, handler):
        out = handler(self)
        if isinstance(out, dict) and out.get("select_by") == "oracle":
            del out["select_by"]  # absent by default: every probe planned before the key keeps its run id
        return out


PROBE_FIT_VERSION = 2  # bump when the fit changes: cached heads are refitted (2: per-C validators)

# what the L-BFGS probe never reads: it fits to convergence on all the cached features at once
LBFGS_UNUSED = frozenset({"epochs", "batch_size", "lr", "weight_decay", "optimizer", "momentum", "scheduler",
                          "warmup_ratio", "grad_accum", "max_grad_norm", "eval_every", "patience", "max_steps",
                          "compile", "channels_last", "group_by_length"})


@STRATEGIES.register("linear_probe", description="frozen backbone; linear head on features computed once and cached")
class LinearProbe(Strategy):
    """Frozen backbone (bit-identical after the run); the head trains on cached features."""

    Params = ProbeParams
    records_domain_gap = True

    def __init__(self, params, train):
        super().__init__(params, train)
        self.selection_val: dict | None = None
        self.fit: dict | None = None  # the L-BFGS fit (chosen C, scores, head), once adapt made it

    @classmethod
    def check(cls, params, pair, suite):
        from harness.targets.naming import evaluated_elsewhere

        if params.solver != "lbfgs" and params.model_fields_set & {"c_grid", "max_iter", "refit", "select_by"}:
            return ["c_grid, max_iter, refit and select_by apply to solver: lbfgs only"]
        if params.select_by != "oracle" and not pair.target.params.get("unlabeled"):
            return [f"select_by: {params.select_by} chooses C with a validator that reads the unlabeled target "
                    "data: give the target `unlabeled:` data, or leave select_by at oracle"]
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

    def bn_statistics(self) -> str:
        return "frozen"  # the source model's own: the backbone never runs in train mode

    def adapt(self, model, data, ctx):
        from harness.targets.naming import evaluated_elsewhere

        if self.params.refit and evaluated_elsewhere(ctx.target):
            # val is the evaluated domain's, labels and all: choose C there (as every cell chooses on
            # val), but never fit on it
            self.params = self.params.model_copy(update={"refit": False})

        feats, key = ctx.features(model.backbone, data, self.feature_batch_size())
        feats, key = self.transform(model, data, feats, key, ctx)
        if self.params.solver == "lbfgs":
            with ctx.phase("train"):
                fit_hit = self.fit_head(model.head, feats, key, ctx, model.backbone, data)
            c, scores = self.fit["c"], self.fit["scores"]
            grid = sorted(self.params.c_grid)
            ctx.notes["lbfgs"] = {"chosen_C": c, "select_by": self.params.select_by, "scores": scores,
                                  "refit_on_train_val": self.params.refit,
                                  "at_grid_edge": len(grid) > 2 and c in (grid[0], grid[-1]), "fit_cache_hit": fit_hit}
            if self.fit.get("validator_facts") is not None:
                ctx.notes["validators"] = self.fit["validator_facts"]
        from harness.sources.nets import HeadModel

        return HeadModel(model.head), feats

    SOLVER = "L-BFGS logistic regression"  # what the budget table names the fit

    def closed_form(self):
        """The solver and chosen C; on a pair with unlabeled target data also what chose it and every
        C's validators and test score (``choices``: the domain report's table of what each validator
        would have chosen)."""
        if self.params.solver != "lbfgs" or self.fit is None:
            return None
        out = {"solver": self.SOLVER, "C": self.fit["c"]}
        choices = [{"C": s["C"], "validators": s["validators"], "test": s.get("test")}
                   for s in self.fit["scores"] if "validators" in s]
        if choices:
            out.update(select_by=self.params.select_by, choices=choices)
        return out

    def validators(self) -> dict | None:
        """The chosen C's label-free validators (a record's ``metrics.validators``), when measured."""
        if self.fit is None:
            return None
        return next((s["validators"] for s in self.fit["scores"] if s["C"] == self.fit["c"] and "validators" in s),
                    None)

    def map_source(self, x: torch.Tensor) -> torch.Tensor:
        """What the head's input is made of a labelled (source-domain) row of frozen features: itself."""
        return x

    def map_target(self, x: torch.Tensor) -> torch.Tensor:
        """… and of an evaluated-domain (target) row: itself (subspace alignment projects each)."""
        return x

    def feature_batch_size(self) -> int:
        """Examples per forward pass of the frozen backbone (no gradients: twice a training batch, at least 64)."""
        return max(64, self.train.eval_batch_size or 2 * self.train.batch_size)

    def transform(self, model, data, feats, key, ctx):
        """The cached features as the head sees them, and the key of what they are (a subclass
        maps them: subspace alignment, whose key is ``key.derived(transform=…)``); by default unchanged."""
        return feats, key

    def fit_head(self, head, feats, key, ctx, backbone=None, data=None) -> bool:
        """The L-BFGS head: it depends on the features and the solver's params only (it starts from
        zeros, not from the seeded head), so every seed's run reuses the first one's fit from the
        cache. Returns whether it came from there. Given the ``backbone`` and the run's ``data`` on
        a pair with unlabeled target data, every C of the grid also records the label-free
        validators (``ctx.frozen_validators``) and ``select_by`` may choose by one."""
        import torch

        from harness.registry import TASKS

        def compute() -> dict:
            t0 = time.perf_counter()
            task = TASKS.get(ctx.target["task"])
            beside = [0.0]  # seconds of validator measurement: not the fit's cost, nor charged when reused
            with ctx.phase("validators"):  # a measurement beside the fit, not its cost (as a trained run's)
                label_free = None if backbone is None or data is None else ctx.frozen_validators(
                    head, backbone, data, feats, task, self.feature_batch_size(), self.map_source, self.map_target)
            beside[0] += time.perf_counter() - t0
            measure, facts = label_free or (None, None)

            def validate() -> dict:
                t = time.perf_counter()
                with ctx.phase("validators"):
                    out = measure()
                beside[0] += time.perf_counter() - t
                return out
            if validate is None and self.params.select_by != "oracle":
                raise ValueError(f"select_by: {self.params.select_by} needs unlabeled target data (`unlabeled:`)")
            c, scores, val = ctx.fit_logistic_head(head, feats, task, self.params, validate if measure else None,
                                                   self.params.select_by)

            def plain(x):  # metrics hold numpy scalars; the cache loads plain Python only
                return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))

            return {"weight": head.weight.detach().cpu(), "bias": head.bias.detach().cpu(), "c": c,
                    "scores": plain(scores), "val": plain(val), "validator_facts": plain(facts),
                    "seconds": time.perf_counter() - t0 - beside[0]}

        stored, hit = ctx.memo("probe_fits", {"features": key, "params": self.params.model_dump(mode="json")},
                               compute, PROBE_FIT_VERSION)
        if hit:  # another seed's run fitted it: the same head
            with torch.no_grad():
                head.weight.copy_(stored["weight"])
                head.bias.copy_(stored["bias"])
            ctx.reused_s["fit"] = float(stored.get("seconds", 0.0))
        self.fit, self.selection_val = stored, stored["val"]
        return hit
