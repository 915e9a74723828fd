"""SuiteSpec → [RunSpec]: the pair × strategy × seed matrix, each with a stable run_id. Pure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from harness import __version__
from harness.config.schema import PairSpec, StrategySpec, SuiteSpec, TrainConfig

SMOKE_STEPS = 3
SMOKE_EVAL_SAMPLES = 64


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs, fully resolved (defaults < pair.train < strategy < override)."""

    run_id: str
    suite: str
    pair: str
    strategy: str
    label: str
    seed: int
    source: dict[str, Any]
    target: dict[str, Any]
    train: dict[str, Any]
    params: dict[str, Any]
    smoke: bool = False
    price_per_gpu_hour: float | None = None

    def config(self) -> dict[str, Any]:
        """The resolved config: what the run_id hashes and the record stores."""
        return resolved_config(self.pair, self.source, self.target, self.strategy, self.params,
                               self.train, self.seed, self.smoke)

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.train)


def resolved_config(pair, source, target, strategy, params, train, seed, smoke) -> dict[str, Any]:
    return {
        "harness_version": __version__,
        "pair": pair,
        "source": source,
        "target": target,
        "strategy": {"name": strategy, "params": params},
        "train": train,
        "seed": seed,
        "smoke": smoke,
    }


def config_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def make_run_id(pair: str, label: str, seed: int, config: dict[str, Any]) -> str:
    """Readable and stable: ``<pair>.<label>.s<seed>-<hash of the resolved config>``."""
    return f"{pair}.{label}.s{seed}-{config_hash(config)}"


def resolve(suite: SuiteSpec, pair: PairSpec, strat: StrategySpec, smoke: bool = False) -> tuple[dict, dict]:
    """Merge the four layers by key (never by truthiness) into full train config and params."""
    from harness.registry import STRATEGIES

    override = pair.overrides.get(strat.label)
    layers = {**suite.defaults, **pair.train, **strat.train, **(override.train if override else {})}
    train = TrainConfig.model_validate(layers)
    if smoke:
        bs = train.batch_size * train.grad_accum
        train = train.model_copy(update={
            "epochs": 1,
            "max_steps": min(train.max_steps or SMOKE_STEPS, SMOKE_STEPS),
            "max_train_samples": min(train.max_train_samples or 10**12, SMOKE_STEPS * bs),
            "max_eval_samples": min(train.max_eval_samples or 10**12, SMOKE_EVAL_SAMPLES),
            "patience": None,
        })
    cls = STRATEGIES.get(strat.name)
    params = cls.Params.model_validate({**strat.params, **(override.params if override else {})})
    params = cls.complete(params, pair, suite, smoke)
    return train.model_dump(mode="json"), params.model_dump(mode="json")


def expand(suite: SuiteSpec, smoke: bool = False) -> list[RunSpec]:
    """The plan, ordered pair → strategy → seed."""
    runs = []
    for pair in suite.pairs:
        source = pair.source.as_dict("model")
        target = pair.target.as_dict("dataset")
        for strat in suite.strategies:
            train, params = resolve(suite, pair, strat, smoke)
            for seed in suite.seeds:
                cfg = resolved_config(pair.id, source, target, strat.name, params, train, seed, smoke)
                runs.append(RunSpec(
                    run_id=make_run_id(pair.id, strat.label, seed, cfg), suite=suite.suite, pair=pair.id,
                    strategy=strat.name, label=strat.label, seed=seed, source=source, target=target,
                    train=train, params=params, smoke=smoke, price_per_gpu_hour=suite.price_per_gpu_hour,
                ))
    return runs
