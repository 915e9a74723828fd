"""Frozen means frozen: BatchNorm statistics of modules whose weights do not train stay the source's
(``norm_stats: frozen``, the default; ``adapt`` is AdaBN), a head over a fully frozen backbone is a
linear probe, BitFit trains biases only, L2-SP does not stack weight decay on its own penalty."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.plan import expand
from harness.run.context import RunContext
from harness.run.execute import build
from harness.run.loop import fit, train_mode
from harness.run.seed import seed_everything
from harness.suite import load_suite

CPU = torch.device("cpu")

SUITE = """\
suite: frozen
seeds: [0]
defaults: {{epochs: 2, batch_size: 8, lr: 0.05, max_train_samples: 48, max_eval_samples: 16{extra}}}
pairs:
  - id: cnn
    source: {{model: test/tiny_cnn}}
    target: {{dataset: test/tiny_images, task: image-classification}}
strategies:
{strategies}"""


def spec_of(write_suite, strategy: str, extra: str = ""):
    (spec,) = expand(load_suite(write_suite(SUITE.format(strategies=f"  - {strategy}\n", extra=extra))))
    return spec


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in model.named_buffers() if "running_" in n}


def train(spec, tmp_path):
    """Build and train ``spec``; the model (trained in place) and its BatchNorm buffers before."""
    seed_everything(spec.seed)
    strategy, model, data, task = build(spec, CPU)
    before = bn_buffers(model)
    ctx = RunContext(CPU, tmp_path, spec.source, spec.target, spec.seed)
    trained, data = strategy.adapt(model, data, ctx)
    fit(trained, data, task, strategy, spec.train_config, CPU, spec.seed)
    return model, before


def changed(model: nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    after = bn_buffers(model)
    return {n.rsplit(".", 1)[0] for n in before if not torch.equal(before[n], after[n])}


BLOCK_BNS = {"backbone.body.stem.1", "backbone.body.stage1.1", "backbone.body.stage2.1"}


@pytest.mark.parametrize(("strategy", "adapting"), [
    ("lora: {r: 2}", set()),
    ("adapter: {reduction_factor: 2, norms: false}", set()),
    ("adapter: {reduction_factor: 2}", BLOCK_BNS),  # Houlsby trains the norms: their statistics follow
    ("bitfit", set()),
    ("partial_finetune: {trainable_blocks: 1}", {"backbone.body.stage2.1"}),
    ("gradual_unfreeze: {blocks_per_epoch: 1}", {"backbone.body.stage2.1"}),  # 2 epochs: the top block trains last
    ("full_finetune", BLOCK_BNS),  # the control: training does move statistics
])
def test_batchnorm_statistics_move_only_where_the_weights_train(write_suite, tmp_path, strategy, adapting):
    model, before = train(spec_of(write_suite, strategy), tmp_path)
    assert changed(model, before) == adapting


def test_norm_stats_adapt_re_estimates_frozen_batchnorms(write_suite, tmp_path):
    """AdaBN (opt-in): the statistics follow the target even where the weights are frozen."""
    model, before = train(spec_of(write_suite, "lora: {r: 2, norm_stats: adapt}"), tmp_path)
    assert changed(model, before) == BLOCK_BNS


def test_the_policy_survives_evaluation():
    """Validation puts the model in eval mode and back: a frozen BatchNorm must come back frozen."""
    from harness.registry import SOURCES
    from harness.sources.nets import TransferModel

    model = TransferModel(SOURCES.get("test").build("tiny_cnn", {}, pretrained=True), 3)
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    assert train_mode(model, "frozen") == 3
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.training and model.head.training
    assert train_mode(model, "adapt") == 0
    assert all(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_frozen_modules_run_as_in_inference_and_dropout_stays_where_weights_train():
    """A frozen part computes what it computed before training: no dropout in a module none of
    whose weights train (LoRA's frozen feed-forward layers), dropout kept where weights train (its
    attention), and everywhere with frozen_dropout: true."""
    from harness.config.schema import TrainConfig
    from harness.registry import SOURCES, STRATEGIES
    from harness.sources.nets import TransferModel

    model = TransferModel(SOURCES.get("test").build("tiny_bert", {}, pretrained=True), 3, dropout=0.1)
    lora = STRATEGIES.get("lora")
    lora(lora.Params(), TrainConfig()).prepare(model)
    train_mode(model)
    layer = model.backbone.body.encoder.layer[0]
    assert layer.attention.self.training and layer.attention.self.dropout.training  # LoRA trains in here
    assert not layer.intermediate.training and not layer.output.dropout.training  # frozen: inference
    assert not model.backbone.body.embeddings.training
    assert model.dropout.training and model.head.training  # the head's own dropout is part of what trains
    train_mode(model, frozen_dropout=True)
    assert all(m.training for m in model.modules())


def test_a_frozen_text_backbone_gives_the_probes_features_while_training():
    from harness.registry import SOURCES
    from harness.sources.nets import TransferModel

    model = TransferModel(SOURCES.get("test").build("tiny_bert", {}, pretrained=True), 3)
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    batch = {"input_ids": torch.randint(5, 60, (4, 10)), "attention_mask": torch.ones(4, 10, dtype=torch.long)}
    model.eval()
    with torch.no_grad():
        probe = model.backbone(batch)
    train_mode(model)
    with torch.no_grad():
        assert torch.equal(model.backbone(batch), probe)
    train_mode(model, frozen_dropout=True)
    with torch.no_grad():
        assert not torch.equal(model.backbone(batch), probe)  # the test can fail: dropout changes them


def test_a_head_on_a_frozen_backbone_is_the_linear_probe(write_suite, tmp_path):
    """partial_finetune with 0 blocks trains the head on exactly the features the probe caches, so
    with the same optimizer, lr, epochs and batches it ends with the probe's head and its scores."""
    extra = ", eval_batch_size: 8"
    probe_spec = spec_of(write_suite, "linear_probe: {solver: adamw}", extra)
    partial_spec = spec_of(write_suite, "partial_finetune: {trainable_blocks: 0}", extra)

    def head_and_scores(spec):
        seed_everything(spec.seed)
        strategy, model, data, task = build(spec, CPU)
        trained, data = strategy.adapt(model, data, RunContext(CPU, tmp_path, spec.source, spec.target, spec.seed))
        result = fit(trained, data, task, strategy, spec.train_config, CPU, spec.seed)
        return model.head.weight.detach().clone(), result

    probe_head, probe = head_and_scores(probe_spec)
    partial_head, partial = head_and_scores(partial_spec)
    torch.testing.assert_close(partial_head, probe_head, atol=1e-5, rtol=1e-4)
    assert partial.test["accuracy"] == probe.test["accuracy"]
    assert [round(p["train_loss"], 5) for p in partial.curve] == [round(p["train_loss"], 5) for p in probe.curve]


def test_bitfit_trains_biases_only_unless_norms_are_asked_for():
    from harness.config.schema import TrainConfig
    from harness.registry import SOURCES, STRATEGIES
    from harness.sources.nets import TransferModel

    def trainable(**params):
        model = TransferModel(SOURCES.get("test").build("tiny_cnn", {}, pretrained=True), 3)
        cls = STRATEGIES.get("bitfit")
        cls(cls.Params.model_validate(params), TrainConfig()).prepare(model)
        return {n for n, p in model.backbone.named_parameters() if p.requires_grad}

    biases = trainable()
    assert biases and all(n.endswith(".bias") for n in biases)
    assert "body.stem.1.bias" in biases and "body.stem.1.weight" not in biases  # a BatchNorm's shift, not its scale
    with_norms = trainable(norms=True)
    assert with_norms - biases == {"body.stem.1.weight", "body.stage1.1.weight", "body.stage2.1.weight"}


def test_l2sp_does_not_stack_weight_decay_on_its_penalty_unless_asked(write_suite):
    from harness.config.schema import TrainConfig
    from harness.registry import SOURCES, STRATEGIES
    from harness.sources.nets import TransferModel

    cls = STRATEGIES.get("l2sp")

    def decays(**params):
        model = TransferModel(SOURCES.get("test").build("tiny_cnn", {}, pretrained=True), 3)
        strat = cls(cls.Params.model_validate(params), TrainConfig(weight_decay=0.1))
        strat.prepare(model)
        return {g["weight_decay"] for g in strat.param_groups(model)}

    assert decays() == {0.0}
    assert decays(stack_weight_decay=True) == {0.0, 0.1}  # biases and norms never decay
    quiet = load_suite(write_suite(SUITE.format(strategies="  - l2sp\n", extra=", weight_decay: 0.1"), "a.yaml"))
    assert not quiet.warnings
    loud = load_suite(write_suite(SUITE.format(strategies="  - l2sp: {stack_weight_decay: true}\n",
                                               extra=", weight_decay: 0.1"), "b.yaml"))
    (w,) = loud.warnings
    assert "b.yaml:" in str(w) and "strategies[0].l2sp" in str(w) and "weight_decay=0.1 is applied on top" in str(w)
