"""``linear_probe``: a frozen backbone; only a linear head trains, on cached features."""

from __future__ import annotations

from harness.registry import STRATEGIES
from harness.sources.base import HeadModel
from harness.strategies.base import Strategy


@STRATEGIES.register("linear_probe", description="frozen backbone; linear head on features computed once and cached")
class LinearProbe(Strategy):
    """Frozen backbone (bit-identical after the run); the head trains on cached features."""

    def prepare(self, model):
        model.requires_grad_(False)
        model.head.requires_grad_(True)

    def adapt(self, model, data, ctx):
        from harness.run.features import cached_features

        key = {"source": ctx.source, "target": ctx.target, "split": data.split_info,
               "preprocessing": data.preprocessing, "sizes": {k: len(s) for k, s in data.splits.items()}}
        timer = ctx.meter.phase("feature") if ctx.meter else None
        if timer:
            timer.__enter__()
        try:
            feats, hit = cached_features(model.backbone.to(ctx.device), data, key, ctx.cache_dir, ctx.device,
                                         batch_size=max(64, self.train.eval_batch_size or 2 * self.train.batch_size),
                                         show_progress=ctx.show_progress)
        finally:
            if timer:
                timer.__exit__(None, None, None)
        ctx.notes["feature_cache_hit"] = hit
        return HeadModel(model.head), feats
