"""What a run hands its strategy: the services a strategy uses instead of reaching into the runner.

A strategy is given a :class:`RunContext` in ``adapt`` and uses only what it offers: the run's
identity and device, the outputs of the runs it reads (``inputs``), the frozen features of its
pair through the feature cache (``features``), a memoised computation whose key, version, lock and
storage the runner owns (``memo``), its own seeded data streams (``stream``), the loop's step count
(``planned_micro_steps``), other targets loaded and checked as the run's own is (``load_target``),
the logistic-regression fit, and a place for facts about the run (``notes``) and for the time
cached work took when it was computed (``reused_s``). No strategy builds a cache key: the runner
decides how things are stored, and a warm cache from before keeps hitting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import cache
from harness.config.schema import TrainConfig
from harness.plan import PRETRAIN_INPUT
from harness.run import features, logistic, loop, outputs, seed
from harness.targets.base import Split, TargetData
from harness.targets.load import load_target
from harness.tasks import Task


@dataclass
class InputRun:
    """What a run receives of one of its inputs: the input's run_id and its outputs, by name."""

    run_id: str
    outputs: dict[str, Any] = field(default_factory=dict)


def identities(parts: Any) -> Any:
    """``parts`` with every :class:`~harness.run.features.FeatureKey` replaced by its cache id."""
    if isinstance(parts, features.FeatureKey):
        return parts.id
    if isinstance(parts, Mapping):
        return {k: identities(v) for k, v in parts.items()}
    if isinstance(parts, list | tuple):
        return [identities(v) for v in parts]
    return parts


class RunContext:
    """What ``adapt`` may use besides the model and data: device, cache, run identity, the outputs
    of the runs it reads (``inputs``, filled by the executor from the plan graph), and the runner's
    services (below)."""

    def __init__(self, device: torch.device, cache_dir: str | Path | None, source: dict, target: dict, seed: int,
                 meter: Any = None, show_progress: bool = False, suite: Any = None, results_dir: Any = None,
                 inputs: dict[str, InputRun] | None = None):
        self.device, self.cache_dir, self.source, self.target = device, cache_dir, source, target
        self.seed, self.meter, self.show_progress = seed, meter, show_progress
        self.suite, self.results_dir = suite, results_dir
        self.inputs: dict[str, InputRun] = dict(inputs or {})
        self.notes: dict[str, Any] = {}  # strategy facts for the record (e.g. feature cache hit)
        # seconds the cached work this run reused took when it was computed (phase -> s): the cost
        # of the result is what it takes to compute it, not what a warm cache made it
        self.reused_s: dict[str, float] = {}

    def phase(self, name: str) -> contextlib.AbstractContextManager:
        """Time work done inside a hook as a cost phase ("feature", "train", …) when metered."""
        return self.meter.phase(name) if self.meter else contextlib.nullcontext()

    def memo(self, kind: str, parts: Any, compute: Callable[[], Any], version: int = 1) -> tuple[Any, bool]:
        """``compute()``'s payload, computed once for ``parts`` (JSON-able; a :class:`FeatureKey` among
        them stands for the features it names) and stored in the cache under ``kind``; ``version``
        is the computation's own (bump it when the computation changes). Returns the payload and
        whether it came from the cache. One process computes an entry at a time; a damaged entry is
        recomputed. Without a cache directory it is simply computed."""
        path = cache.entry(self.cache_dir, kind, cache.key(identities(parts), version))
        return cache.load_or_compute(path, compute)

    def feature_key(self, data: TargetData) -> features.FeatureKey:
        """What decides the source's frozen features on ``data`` (the key the probe, the domain gap
        and ``harness rank`` share): a ``pretrain:`` source's are its pretrain run's weights."""
        pretrained = self.inputs.get(PRETRAIN_INPUT)
        return features.FeatureKey(features.frozen_key(self.source, self.target, data, self.seed,
                                                       pretrained.run_id if pretrained else None))

    def features(self, backbone: torch.nn.Module, data: TargetData,
                 batch_size: int) -> tuple[TargetData, features.FeatureKey]:
        """The frozen ``backbone``'s features of every split of ``data`` (from the feature cache when
        an entry exists: computed once per pair and reused by every seed and epoch) and their key.
        Timed as the "feature" phase; the note ``feature_cache_hit`` says which it was."""
        key = self.feature_key(data)
        backbone = backbone.to(self.device)
        with self.phase("feature"):
            feats, reused = features.cached_features(backbone, data, key.parts, self.cache_dir, self.device,
                                                     batch_size=batch_size, show_progress=self.show_progress)
        self.notes["feature_cache_hit"] = reused is not None
        if reused is not None:
            self.reused_s["feature"] = reused
        return feats, key

    def frozen_rows(self, backbone: torch.nn.Module, split: Split, batch_size: int) -> torch.Tensor:
        """The frozen ``backbone``'s features of a split's inputs, labels unread (one row per image or
        per non-padding token); not cached."""
        return features.frozen_rows(backbone.to(self.device), split, self.device, batch_size)

    def fit_logistic_head(self, head: torch.nn.Linear, data: TargetData, task: Task,
                          params: logistic.GridParams, validate: logistic.Validate | None = None,
                          select_by: str = "oracle") -> tuple[float, list[dict], dict]:
        """The L-BFGS logistic-regression head over feature splits, C chosen on validation or by a
        label-free validator (:func:`harness.run.logistic.select_c`)."""
        return logistic.select_c(head, data, task, params, self.device, validate, select_by)

    def frozen_validators(self, head: torch.nn.Linear, backbone: torch.nn.Module, data: TargetData,
                          feats: TargetData, task: Task, batch_size: int, source_map=lambda x: x,
                          target_map=lambda x: x) -> tuple[logistic.Validate, dict[str, Any]] | None:
        """The label-free validators of a head over frozen features, per fit of a C grid
        (:func:`harness.run.selection.frozen`); None when the pair has no unlabeled target data."""
        from harness.run import selection
        from harness.targets.naming import evaluated_elsewhere

        return selection.frozen(head, backbone, data, feats, task, self.device, batch_size,
                                evaluated_elsewhere(self.target), source_map, target_map)

    def stream(self, split: Split, batch_size: int, salt: int) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled batches of ``split`` forever (a fresh order each pass), on the run's device, from
        a generator of their own seeded by the run's seed + ``salt``: the loop's batches come in the
        same order with or without them."""
        generator = seed.data_generator(self.seed + salt)
        while True:
            for batch in split.batches(batch_size, shuffle=True, generator=generator):
                yield loop.to_device(batch, self.device)

    def planned_micro_steps(self, train: TrainConfig, examples: int) -> int:
        """The forward passes the loop makes at most when it trains on ``examples`` examples."""
        return loop.planned_micro_steps(train, examples)

    def load_target(self, target: dict[str, Any], backbone: Any, task: str) -> TargetData:
        """Another target (an auxiliary task's) loaded and checked as the run's own is."""
        return load_target(target, backbone, task)

    def subsample(self, split: Split, max_samples: int | None) -> Split:
        """``split`` limited to ``max_samples`` examples, drawn as the run's own splits are (one fixed
        seed for every run seed)."""
        return split.sample(max_samples, seed.SUBSAMPLE_SEED)

    def align(self, payload: dict[str, Any], keys: np.ndarray, what: str) -> list[torch.Tensor]:
        """An input run's exported per-example rows in the order of ``keys`` (this run's examples)."""
        return outputs.align(payload, keys, what)
