"""``harness rank``: transferability scores of every source for each target of a suite, before any
training — the run-time use of the scores (the scores themselves: :mod:`harness.transferability`;
their report view: :mod:`harness.report.transferability`) — from the frozen features the linear probe caches (the same cache, keyed the same way:
:func:`harness.run.features.frozen_key`), and from the source's own classifier head where it kept one
(LEEP and NCE need the source's predictions; a truncated, random or head-less source has none).

Scores are computed on the target's training split — what a probe or a fine-tune would learn from —
never on validation or test. The result is written beside the suite's records, under a dot-directory
the record scanner skips (``results/<suite>/.transferability/scores.json``), where ``harness report``
finds it and sets each score beside what fine-tuning then measured.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from harness.transferability import SourceScores, by_target


def probe_spec(runs, pair: str):
    """The spec whose data (limits, split) the pair's probe sees: its linear probe final when it has
    one (same feature-cache entry), else its first final that starts from the source's weights (not
    ``scratch``, whose source is the architecture alone); never a search trial. None: no such run."""
    from harness.registry import STRATEGIES

    finals = [r for r in runs if r.pair == pair and r.role == "final"]
    probes = [r for r in finals if r.strategy == "linear_probe"]
    weighted = [r for r in finals if STRATEGIES.get(r.strategy).pretrained]
    return (probes or weighted or [None])[0]


def source_probabilities(backbone, features: torch.Tensor) -> np.ndarray | None:
    """The source head's softmax over its own classes, when the backbone kept that head."""
    head = getattr(backbone, "source_head", None)
    if head is None:
        return None
    weight, bias = head
    with torch.no_grad():
        logits = features.float() @ weight.T.float() + bias.float()
        return torch.softmax(logits.double(), dim=1).numpy()


def pretrain_runs(runs, specs) -> list:
    """The ``pretrain:`` runs (with what they depend on) the sources of ``specs`` are trained by:
    part of building a source, so ``harness rank`` makes them first (records and cache, as
    ``harness run`` would, which then reuses them)."""
    from harness.plan import PRETRAIN_INPUT, closure

    by_id = {r.run_id: r for r in runs}
    needed = [by_id[s.inputs[PRETRAIN_INPUT]] for s in specs if s is not None and PRETRAIN_INPUT in s.inputs]
    return closure(list(runs), needed) if needed else []


def score_pair(spec, cache_dir: Path, device: torch.device, show_progress: bool = False,
               inputs=None) -> SourceScores:
    from harness.plan import PRETRAIN_INPUT
    from harness.run.execute import ExecOptions, cached_target, limit, read_inputs, source_backbone
    from harness.run.features import cached_features, frozen_key
    from harness.run.loop import place
    from harness.run.seed import seed_everything
    from harness.transferability import SCORES, ScoreError, score_all

    cfg = spec.train_config
    seed_everything(spec.seed)  # a random source draws its weights from the seed, as its runs do
    try:  # the pretrain only: a distill run's teacher is not part of its source
        own = replace(spec, inputs={k: v for k, v in spec.inputs.items() if k == PRETRAIN_INPUT})
        input_runs = read_inputs(own, inputs, ExecOptions(cache_dir=cache_dir)) if inputs else None
    except ValueError as e:  # its pretrain run failed (again): nothing to score
        raise ScoreError(f"the source's pretrain run did not finish: {e}") from e
    backbone = source_backbone(spec, True, input_runs)
    data = limit(cached_target(spec, backbone), cfg.max_train_samples, cfg.max_eval_samples)
    data = place(data, device, cfg.num_workers)
    key = frozen_key(spec.source, spec.target, data, spec.seed, spec.inputs.get(PRETRAIN_INPUT))
    t0 = time.perf_counter()
    feats, reused = cached_features(backbone.to(device), data, key, cache_dir, device,
                                    batch_size=max(64, cfg.eval_batch_size or 2 * cfg.batch_size),
                                    show_progress=show_progress)
    feature_s = reused if reused is not None else time.perf_counter() - t0
    train = feats.splits["train"].tensors
    x, y = train["features"].cpu(), train["labels"].cpu()
    probs = source_probabilities(backbone, x)
    out = SourceScores(spec.pair, dict(spec.source), dict(spec.target), n=int(x.shape[0]), dim=int(x.shape[1]),
                       classes=int(len(torch.unique(y))), feature_s=round(feature_s, 3),
                       feature_cache_hit=reused is not None)
    t0 = time.perf_counter()
    out.scores = score_all(x.double().numpy(), y.numpy().astype(np.int64), probs)
    out.score_s = round(time.perf_counter() - t0, 3)
    for name, s in SCORES.items():
        if name not in out.scores and s.needs == "source_probs":
            out.skipped[name] = "the source kept no classifier head of its own (truncated, random or head-less)"
    return out


def rank_suite(runs, cache_dir: Path, device: torch.device, show_progress: bool = False,
               on_pair=None, failed: dict[str, str] | None = None) -> list[SourceScores]:
    """Every pair's scores; a pair whose source's pretrain run is in ``failed`` (run_id → why) is
    skipped, not trained again."""
    from harness.plan import PRETRAIN_INPUT
    from harness.transferability import ScoreError

    out = []
    by_id = {r.run_id: r for r in runs}
    for pair in dict.fromkeys(r.pair for r in runs if r.role == "final"):
        spec = probe_spec(runs, pair)
        if spec is None:
            continue  # only scratch: the pair transfers no weights, there is nothing to rank
        pre = spec.inputs.get(PRETRAIN_INPUT)
        try:
            if pre is not None and pre in (failed or {}):
                raise ScoreError(f"its source's pretrain run {pre} failed: {failed[pre]}")  # type: ignore[index]
            result = score_pair(spec, cache_dir, device, show_progress,
                                inputs={PRETRAIN_INPUT: by_id[pre]} if pre else None)
        except ScoreError as e:
            result = SourceScores(pair, dict(spec.source), dict(spec.target), 0, 0, 0, skipped={"all": str(e)})
        out.append(result)
        if on_pair is not None:
            on_pair(result)
    return out


def render(results: list[SourceScores]) -> str:
    """One ranking table per target: sources by LogME, every score beside, times last."""
    from harness.transferability import SCORES

    lines = []
    for target, rows in by_target(results).items():
        names = [n for n in SCORES if any(n in r.scores for r in rows)]
        lines += [f"{target}: {len(rows)} source(s)", ""]
        head = ["#", "pair", *names, "n", "dim", "features s", "scores s"]
        order = sorted(rows, key=lambda r: -r.scores.get("logme", float("-inf")))
        table = [head] + [[str(i + 1), r.pair, *(f"{r.scores[n]:.4f}" if n in r.scores else "–" for n in names),
                           str(r.n), str(r.dim), f"{r.feature_s:.2f}{' (cached)' if r.feature_cache_hit else ''}",
                           f"{r.score_s:.2f}"] for i, r in enumerate(order)]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
        lines.append("")
    return "\n".join(lines)
