"""Every registered strategy runs one step on a tiny vision and a tiny text model, end to end.

The strategy list comes from the registry, so a new strategy module is covered the moment it
registers. A strategy that needs more suite context than ``{name: {}}`` (a teacher beside it,
an unlabeled domain on the target) declares it in ``SUITE_CONTEXT`` below.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from harness.executors.base import run_plan
from harness.plan import expand
from harness.registry import STRATEGIES, TASKS
from harness.run.execute import ExecOptions
from harness.suite import load_suite

PAIRS = {
    "vision": {"id": "vision", "source": {"model": "test/tiny_cnn"},
               "target": {"dataset": "test/tiny_images", "task": "image-classification"}},
    "text": {"id": "text", "source": {"model": "test/tiny_bert"},
             "target": {"dataset": "test/tiny_ner", "task": "token-classification"}},
}

# Per strategy: ``params`` of its own entry, ``with`` (strategy entries it needs beside it, e.g. a
# teacher, run first), ``target`` (keys merged into each pair's target, e.g. an unlabeled domain)
# and ``pairs`` (extra keys merged into each pair, e.g. more tasks).
SUITE_CONTEXT: dict[str, dict | Callable[[str], dict]] = {
    "distill": {"params": {"teacher": "full_finetune"}, "with": [{"full_finetune": {}}]},
    "adabn": {"target": {"unlabeled": "shifted"}},
    "dann": {"target": {"unlabeled": "shifted"}},
    "coral": {"target": {"unlabeled": "shifted"}},
    "mmd": {"target": {"unlabeled": "shifted"}},
    "importance_weighting": {"target": {"unlabeled": "shifted"}},
    # val and test are projected onto the unlabeled domain's subspace: evaluated there
    "subspace_alignment": {"target": {"unlabeled": "shifted", "eval_domain": "shifted"}},
    # a context that depends on the modality is a function of it: one auxiliary task on the
    # modality's own tiny target (same split, so no test example leaks into its training set)
    "multitask": lambda modality: {"params": {"tasks": [{"target": PAIRS[modality]["target"], "weight": 0.5}]}},
}


def conformance_suite(name: str, modality: str) -> dict:
    context = SUITE_CONTEXT.get(name, {})
    context = context(modality) if callable(context) else context
    pair = {**PAIRS[modality], **context.get("pairs", {})}
    pair["target"] = {**pair["target"], **context.get("target", {})}
    return {
        "suite": f"conformance-{name}-{modality}".replace("_", "-"),
        "seeds": [0],
        "defaults": {"epochs": 1, "batch_size": 4, "max_steps": 1, "max_train_samples": 8, "max_eval_samples": 8},
        "pairs": [pair],
        "strategies": [*context.get("with", []), {name: context.get("params", {})}],
    }


@pytest.mark.parametrize("modality", sorted(PAIRS))
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_runs_one_step(name, modality, tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(conformance_suite(name, modality), sort_keys=False))
    runs = expand(load_suite(path))  # the strategy's validate-time check passes on the tiny models
    outcome = run_plan(runs, tmp_path / "results", ExecOptions(cache_dir=tmp_path / "cache", results_dir=tmp_path / "results"))
    (record,) = [r for r in outcome.done if r.label == name]
    assert record.status == "ok", record.error
    cost = record.cost
    assert 0 < cost["trainable_params"] <= cost["total_params"]
    assert cost["trainable_fraction"] == pytest.approx(cost["trainable_params"] / cost["total_params"], abs=1e-6)
    assert cost["steps"] <= 1
    primary = TASKS.get(PAIRS[modality]["target"]["task"]).primary
    assert primary in record.metrics and primary in record.metrics["val"]
