"""The controls beside every domain-adaptation row (issue 28): AdaBN re-estimates BatchNorm
statistics on the unlabeled target data and nothing else; ``weight: 0`` removes a method's loss
and keeps its pipeline; every record says where its BatchNorm statistics came from."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from harness.registry import STRATEGIES
from harness.run.context import RunContext
from harness.run.execute import ExecOptions, build, execute
from harness.strategies.adabn import reestimate, statistics_of
from harness.targets.base import TensorSplit
from tests.unit.test_strategies_transfer import CPU, one, plan


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.ReLU())

    class Wrapped(nn.Module):  # the models take a batch dict, as TransferModel does
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, batch):
            return {"logits": self.net(batch["pixel_values"])}

    return Wrapped()


def test_adabn_statistics_are_the_target_datas_own_mean_and_variance():
    model = bn_net()
    images = torch.rand(24, 3, 6, 6) * 3 + 1  # far from the fresh layer's statistics (0, 1)
    split = TensorSplit({"pixel_values": images})
    model.train()  # the run's mode: re-estimating must put it back
    with torch.no_grad():
        conv = model.net[0](images)  # what the BatchNorm sees, computed independently
    mean = conv.mean(dim=(0, 2, 3))
    var = conv.permute(1, 0, 2, 3).reshape(4, -1).var(dim=1, unbiased=True)
    assert reestimate(model, split, batch_size=24, device=CPU) == 1
    bn = model.net[1]
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-5)
    assert bn.momentum == 0.1 and all(m.training for m in model.modules())
    # in several batches: the cumulative average of the batches' statistics, each batch counted once
    reestimate(model, split, batch_size=8, device=CPU)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-5)


def test_adabn_gives_back_the_source_statistics_after_evaluating():
    model = bn_net()
    bn = model.net[1]
    bn.running_mean.fill_(0.25)
    split = TensorSplit({"pixel_values": torch.rand(10, 3, 6, 6) + 2})
    with statistics_of(model, split, 5, CPU):
        assert float(bn.running_mean.abs().sum()) != pytest.approx(1.0)
    assert torch.equal(bn.running_mean, torch.full((4,), 0.25))


def test_an_adabn_run_is_scored_with_target_statistics_and_says_so(write_suite, tmp_path):
    runs = plan(write_suite, "  - adabn\n  - full_finetune\n")
    adabn = execute(one(runs, "cnn", "adabn"), ExecOptions(cache_dir=tmp_path))
    plain = execute(one(runs, "cnn", "full_finetune"), ExecOptions(cache_dir=tmp_path))
    assert adabn.status == "ok", adabn.error
    notes = adabn.config["notes"]
    assert notes["adabn"]["reestimations"] >= 2 and notes["adabn"]["batchnorms"] == 3  # val and test at least
    assert (adabn.data["bn_statistics"], plain.data["bn_statistics"]) == ("target", "labelled")
    assert adabn.data["control"].startswith("source only + target BatchNorm") and plain.data["control"] is None
    # the same training (same seed, same batches): only the statistics it is scored with differ
    assert adabn.metrics["loss"] != plain.metrics["loss"]
    bert = execute(one(runs, "bert", "adabn"), ExecOptions(cache_dir=tmp_path))
    assert bert.status == "ok", bert.error
    assert bert.data["bn_statistics"] == "none"  # a transformer: AdaBN is source only there
    assert bert.config["notes"]["adabn"] == {"reestimations": 0, "batchnorms": 0, "batches_per_reestimation": 0}


@pytest.mark.parametrize(("strategy", "expected"), [("coral", "labelled+target"), ("dann", "labelled+target"),
                                                    ("importance_weighting", "labelled+target"),
                                                    ("linear_probe", "frozen"), ("contrastive", "labelled")])
def test_each_method_states_its_batchnorm_statistics(write_suite, tmp_path, strategy, expected):
    runs = plan(write_suite, f"  - {strategy}\n")
    record = execute(one(runs, "cnn", strategy), ExecOptions(cache_dir=tmp_path))
    assert record.status == "ok", record.error
    assert record.data["bn_statistics"] == expected
    assert record.config["notes"]["norm_stats"]["statistics"] == expected


WEIGHTED = {"coral": "weight", "mmd": "weight", "dann": "domain_weight", "contrastive": "weight"}


@pytest.mark.parametrize("strategy", sorted(WEIGHTED))
@pytest.mark.parametrize("pair", ["cnn", "bert"])
def test_weight_zero_keeps_the_pipeline_and_removes_the_loss(write_suite, pair, strategy):
    key = WEIGHTED[strategy]
    runs = plan(write_suite, f"  - {strategy}: {{label: control, {key}: 0}}\n")
    spec = one(runs, pair, "control")
    assert spec.params[key] == 0
    cls = STRATEGIES.get(strategy)
    assert cls.control(cls.Params.model_validate(spec.params)) is not None
    assert cls.control(cls.Params.model_validate({})) is None  # the method itself is no control
    strat, model, data, _ = build(spec, CPU)
    strat.adapt(model, data, RunContext(CPU, None, {}, {}, 0))
    labelled = next(data.splits["train"].batches(8))
    if getattr(strat, "uses_unlabeled", False):
        strat.unlabeled = itertools.repeat(next(data.extra["unlabeled"].batches(8)))
        strat.calls = strat.total  # dann: λ at its end value
    calls = getattr(strat, "calls", 0)
    model.eval()
    model.zero_grad()
    loss = strat.extra_loss(model, labelled, model(labelled))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.parameters())
    if strategy != "contrastive":  # the unlabeled batch still went through the model: the pipeline, minus the loss
        assert strat.calls == calls + 1
