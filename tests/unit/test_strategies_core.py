"""Each strategy does what its name promises, on the tiny test models (CPU, seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.config.schema import TrainConfig
from harness.errors import ConfigError
from harness.plan import expand
from harness.registry import SOURCES, STRATEGIES, TASKS
from harness.run.context import RunContext
from harness.run.execute import ExecOptions, build, execute
from harness.run.logistic import fit_logistic, select_c
from harness.run.loop import build_optimizer, fit
from harness.sources.nets import TransferModel, count_params
from harness.strategies.linear_probe import ProbeParams
from harness.suite import load_suite
from harness.targets.base import TargetData, TensorSplit

CPU = torch.device("cpu")


def tiny_model(name: str = "tiny_cnn", num_labels: int = 3) -> TransferModel:
    return TransferModel(SOURCES.get("test").build(name, {}, pretrained=True), num_labels)


def strategy(name: str, train: dict | None = None, **params):
    cls = STRATEGIES.get(name)
    return cls(cls.Params.model_validate(params), TrainConfig.model_validate(train or {}))


def image_batch(n: int = 6, size: int = 16, classes: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"pixel_values": torch.rand(n, 3, size, size, generator=g), "labels": torch.arange(n) % classes}


def text_batch(model: TransferModel) -> dict[str, torch.Tensor]:
    enc = model.backbone.input_spec.tokenizer(["the cat sat", "a dog in the park"], padding=True, return_tensors="pt")
    labels = torch.where(enc["attention_mask"].bool(), 1, -100)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def params_with_grad(model, batch) -> set[str]:
    model.zero_grad(set_to_none=True)
    out = model(batch)
    torch.nn.functional.cross_entropy(out["logits"].flatten(0, -2), batch["labels"].flatten(), ignore_index=-100).backward()
    return {n for n, p in model.named_parameters() if p.grad is not None}


def names_in(model, modules) -> set[str]:
    ids = {id(p) for m in modules for p in m.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def suite_runs(write_suite, strategies: str, source: str = "test/tiny_cnn", target: str = "test/tiny_images",
               task: str = "image-classification", seeds: str = "[0]", defaults: str = "epochs: 1, batch_size: 8"):
    path = write_suite(f"""
        suite: core
        seeds: {seeds}
        defaults: {{{defaults}, max_train_samples: 32, max_eval_samples: 24}}
        pairs:
          - id: p
            source: {{model: {source}}}
            target: {{dataset: {target}, task: {task}}}
        strategies:
{strategies}
        """)
    return expand(load_suite(path))


def train_like_execute(spec, cache_dir):
    """What ``execute`` does, keeping the model so its weights can be inspected."""
    torch.manual_seed(spec.seed)
    strat, model, data, task = build(spec, CPU)
    before = snapshot(model)
    ctx = RunContext(CPU, cache_dir, spec.source, spec.target, spec.seed)
    trained, data = strat.adapt(model, data, ctx)
    fit(trained, data, task, strat, spec.train_config, CPU, spec.seed)
    return strat, model, before, ctx


# --- linear_probe -----------------------------------------------------------------------

def test_linear_probe_leaves_backbone_bit_identical(write_suite, tmp_path):
    (spec,) = suite_runs(write_suite, "          - linear_probe: {lr: 0.05}")
    strat, model, before, _ = train_like_execute(spec, tmp_path / "cache")
    backbone_state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    for name, value in before.items():
        if name.startswith("backbone."):
            assert torch.equal(value, backbone_state[name]), name
    assert not torch.equal(before["head.weight"], model.head.weight), "the head did not train"


def test_linear_probe_hits_feature_cache_on_second_seed(write_suite, tmp_path):
    runs = suite_runs(write_suite, "          - linear_probe", seeds="[0, 1]")
    options = ExecOptions(cache_dir=tmp_path / "cache")
    first, second = (execute(r, options) for r in runs)
    assert first.status == second.status == "ok", (first.error, second.error)
    assert first.config["notes"]["feature_cache_hit"] is False
    assert second.config["notes"]["feature_cache_hit"] is True
    assert first.cost["trainable_params"] == 16 * 3 + 3  # the head alone
    assert first.cost["total_params"] > first.cost["trainable_params"]


def test_lbfgs_probe_fits_in_adapt_and_the_loop_takes_no_step(write_suite, tmp_path):
    (spec,) = suite_runs(write_suite, "          - linear_probe: {solver: lbfgs, c_grid: [0.01, 1, 100]}")
    record = execute(spec, ExecOptions(cache_dir=tmp_path / "cache"))
    assert record.status == "ok", record.error
    assert record.cost["steps"] == 0
    lbfgs = record.config["notes"]["lbfgs"]
    scores = [s["val_accuracy"] for s in lbfgs["scores"]]
    assert [s["C"] for s in lbfgs["scores"]] == [0.01, 1, 100]
    assert lbfgs["chosen_C"] == lbfgs["scores"][int(np.argmax(scores))]["C"]
    assert record.metrics["val"]["accuracy"] == max(scores)
    # the budget names the fit and its chosen C, not the loop's optimizer and lr it never used
    assert record.budget["closed_form"] == {"solver": "L-BFGS logistic regression", "C": lbfgs["chosen_C"]}
    assert "lr" not in record.budget and "optimizer" not in record.budget


def feature_data(train, val, test) -> TargetData:
    def split(x, y):
        return TensorSplit({"features": torch.tensor(x, dtype=torch.float32), "labels": torch.tensor(y)})
    return TargetData(["a", "b"], {"train": split(*train), "val": split(*val), "test": split(*test)})


def test_lbfgs_chooses_c_on_validation_not_test():
    # Train: separable on x0, 70% class 0. Val: class 0 everywhere but x0 > 0, so only a
    # heavily regularised (prior-only) model is right on val; test agrees with train, so a
    # selection that peeked at test would pick the largest C instead.
    rng = np.random.default_rng(0)
    x0 = np.concatenate([rng.uniform(-2, -0.5, 70), rng.uniform(0.5, 2, 30)])
    train = (np.stack([x0, rng.normal(size=100)], 1), (x0 > 0).astype(np.int64))
    val = (np.stack([rng.uniform(0.5, 2, 20), rng.normal(size=20)], 1), np.zeros(20, np.int64))
    test = (train[0][::3], train[1][::3])
    data = feature_data(train, val, test)
    head = torch.nn.Linear(2, 2)
    grid = [1e-4, 1e-2, 1.0, 100.0]
    threads = torch.get_num_threads()
    params = ProbeParams(solver="lbfgs", c_grid=grid, refit=False)
    chosen, scores, chosen_val = select_c(head, data, TASKS.get("image-classification"), params, CPU)
    assert torch.get_num_threads() == threads  # the solver's single-thread scope is undone
    assert chosen == 1e-4
    assert scores[0]["val_accuracy"] == 1.0 and scores[-1]["val_accuracy"] == 0.0
    assert chosen_val["accuracy"] == 1.0
    with torch.no_grad():  # the head keeps the chosen C's weights: class 0 on val
        assert (head(torch.tensor(val[0], dtype=torch.float32)).argmax(-1) == 0).all()


def test_lbfgs_refit_on_train_and_val_with_the_chosen_c():
    """Kornblith et al.: after C is chosen on val, the head is fitted again on train + val with that
    C — the same solution as fitting the concatenation directly — and the reported validation
    score is the one the choice was made on, before val became training data."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(90, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=90) > 0).astype(np.int64)
    data = feature_data((x[:60], y[:60]), (x[60:], y[60:]), (x[:10], y[:10]))
    grid = [1e-3, 0.1, 10.0]
    head = torch.nn.Linear(3, 2)
    chosen, scores, chosen_val = select_c(head, data, TASKS.get("image-classification"),
                                          ProbeParams(c_grid=grid), CPU)
    assert ProbeParams().solver == "lbfgs" and ProbeParams().refit and len(ProbeParams().c_grid) == 45
    w, b = fit_logistic(torch.tensor(x), torch.tensor(y), 2, chosen, max_iter=300)
    torch.testing.assert_close(head.weight.detach().double(), w, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(head.bias.detach().double(), b, atol=1e-3, rtol=1e-3)
    best = max(s["val_accuracy"] for s in scores)
    assert chosen_val["accuracy"] == best


def test_the_default_probe_grid_is_kornbliths_45_values():
    grid = ProbeParams().c_grid
    assert len(grid) == 45 and grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e5)
    ratios = np.diff(np.log10(grid))
    assert np.allclose(ratios, 11 / 44, atol=1e-4)


def test_fit_logistic_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    for c in (0.1, 10.0):
        w, b = fit_logistic(torch.tensor(x), torch.tensor(y), 3, c, max_iter=500)
        ours = torch.softmax(torch.tensor(x) @ w.T + b, -1).numpy()
        ref = LogisticRegression(C=c, max_iter=5000, tol=1e-10).fit(x, y).predict_proba(x)
        assert np.abs(ours - ref).max() < 2e-3, c


# --- partial_finetune / gradual_unfreeze --------------------------------------------------

@pytest.mark.parametrize("k", [0, 1, 3])
def test_partial_finetune_grads_exactly_the_declared_params(k):
    model = tiny_model()
    strategy("partial_finetune", trainable_blocks=k).prepare(model)
    blocks = model.blocks()
    declared = names_in(model, [*blocks[len(blocks) - k:], model.head])
    assert params_with_grad(model, image_batch()) == declared
    assert {n for n, p in model.named_parameters() if p.requires_grad} == declared


def test_partial_finetune_on_text_layers():
    model = tiny_model("tiny_bert")
    strategy("partial_finetune", trainable_blocks=1).prepare(model)
    last_layer = model.blocks()[-1]
    assert params_with_grad(model, text_batch(model)) == names_in(model, [last_layer, model.head])


@pytest.mark.parametrize("epochs", [2, 3, 5, 8])
def test_gradual_unfreeze_reaches_every_block_by_the_last_epoch(epochs):
    """The schedule derives from the budget: head only first, every block in the last epoch,
    never fewer blocks than the epoch before (ULMFiT's top-down order)."""
    model = tiny_model()
    strat = strategy("gradual_unfreeze", {"epochs": epochs})
    strat.prepare(model)
    depth = len(model.blocks())
    counts = [strat.unfrozen(e, depth) for e in range(epochs)]
    assert counts[0] == 0 and counts[-1] == depth
    assert counts == sorted(counts)
    one = strategy("gradual_unfreeze", {"epochs": 1})
    assert one.unfrozen(0, depth) == depth  # one epoch: nothing to unfreeze into, everything trains


def test_gradual_unfreeze_trainable_set_per_epoch():
    model = tiny_model()
    strat = strategy("gradual_unfreeze", blocks_per_epoch=1)
    strat.prepare(model)
    blocks = model.blocks()
    for epoch in range(5):
        strat.on_epoch_start(model, epoch)
        k = min(epoch, len(blocks))
        expected = names_in(model, [*blocks[len(blocks) - k:], model.head])
        assert {n for n, p in model.named_parameters() if p.requires_grad} == expected, epoch
        assert params_with_grad(model, image_batch()) == expected, epoch
    # every param that will ever train is in the optimizer from the start
    in_groups = {id(p) for g in strat.param_groups(model) for p in g["params"]}
    assert in_groups == {id(p) for p in model.parameters()}


def test_gradual_unfreeze_schedule_in_the_record(write_suite, tmp_path):
    (spec,) = suite_runs(write_suite, "          - gradual_unfreeze: {blocks_per_epoch: 2}", defaults="epochs: 3, batch_size: 8")
    record = execute(spec, ExecOptions(cache_dir=tmp_path))
    assert record.status == "ok", record.error
    schedule = record.config["notes"]["unfreeze_schedule"]
    assert [e["unfrozen_blocks"] for e in schedule] == [0, 2, 3]
    model = tiny_model()
    blocks = model.blocks()
    counts = [sum(p.numel() for m in [*blocks[len(blocks) - k:], model.head] for p in m.parameters()) for k in (0, 2, 3)]
    assert [e["trainable_params"] for e in schedule] == counts


# --- layerwise_lr_decay ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_bert"])
def test_layerwise_lr_decay_group_lrs(name):
    model = tiny_model(name)
    strat = strategy("layerwise_lr_decay", {"lr": 0.01, "weight_decay": 0.1}, decay=0.5)
    strat.prepare(model)
    optimizer = build_optimizer(strat.param_groups(model), strat.train)
    blocks = model.blocks()
    depth_of = {id(p): 0 for p in model.head.parameters()}
    for i, block in enumerate(blocks):
        depth_of.update({id(p): len(blocks) - i for p in block.parameters()})
    seen = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert group["lr"] == pytest.approx(0.01 * 0.5 ** depth_of[id(p)])
            assert group["weight_decay"] == (0.0 if p.ndim <= 1 else 0.1)
            seen.append(id(p))
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each param exactly once


# --- l2sp ---------------------------------------------------------------------------------

def test_l2sp_penalty_zero_at_init_and_gradient_is_alpha_times_drift():
    alpha, beta = 0.3, 0.05
    model = tiny_model()
    strat = strategy("l2sp", alpha=alpha, beta=beta)
    strat.prepare(model)
    penalty = strat.extra_loss(model, {}, {})
    head_sq = sum(float(p.detach().pow(2).sum()) for p in model.head.parameters())
    assert float(penalty.detach()) == pytest.approx(beta / 2 * head_sq)  # backbone term is exactly 0 at w0
    model.head.weight.data.zero_()
    model.head.bias.data.zero_()
    assert float(strat.extra_loss(model, {}, {}).detach()) == 0.0

    g = torch.Generator().manual_seed(0)
    drift = {n: 0.1 * torch.randn(p.shape, generator=g) for n, p in model.backbone.named_parameters()}
    with torch.no_grad():
        for n, p in model.backbone.named_parameters():
            p.add_(drift[n])
        for p in model.head.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    model.zero_grad()
    penalty = strat.extra_loss(model, {}, {})
    penalty.backward()
    expected = alpha / 2 * sum(float(d.pow(2).sum()) for d in drift.values()) + \
        beta / 2 * sum(float(p.detach().pow(2).sum()) for p in model.head.parameters())
    assert float(penalty.detach()) == pytest.approx(expected, rel=1e-5)
    for n, p in model.backbone.named_parameters():
        torch.testing.assert_close(p.grad, alpha * drift[n], rtol=1e-4, atol=1e-6)
    for p in model.head.parameters():
        torch.testing.assert_close(p.grad, beta * p.detach())


# --- parameter-efficient: bitfit, lora, adapter ----------------------------------------------

def lora_count(model, r: int, targets: list[str]) -> int:
    """LoRA adds A (r × fan-in) and B (out × r) per adapted layer (conv: A is r × in × k × k)."""
    modules = dict(model.backbone.body.named_modules())
    total = 0
    for name in targets:
        m = getattr(modules[name], "base_layer", modules[name])  # peft wraps the adapted layer
        fan_in = m.in_features if isinstance(m, torch.nn.Linear) else m.in_channels * math.prod(m.kernel_size)
        out = m.out_features if isinstance(m, torch.nn.Linear) else m.out_channels
        total += r * fan_in + out * r
    return total


def head_count(model) -> int:
    return sum(p.numel() for p in model.head.parameters())


def norm_count(model) -> int:
    from harness.strategies.nets import NORMS

    return sum(p.numel() for m in model.backbone.modules() if isinstance(m, NORMS) for p in m.parameters(recurse=False))


@pytest.mark.parametrize("norms", [True, False])
def test_bitfit_trains_biases_and_optionally_norms(norms):
    model = tiny_model()
    strategy("bitfit", norms=norms).prepare(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for name in trainable - {"head.weight", "head.bias"}:
        assert name.endswith(".bias") or (norms and ".1." in name), name  # tiny_cnn: index 1 of a stage is its BatchNorm
    biases = sum(p.numel() for n, p in model.backbone.named_parameters() if n.endswith(".bias"))
    norm_weights = norm_count(model) - sum(p.numel() for n, p in model.backbone.named_parameters()
                                           if n.endswith(".1.bias"))
    assert count_params(model)[0] == head_count(model) + biases + (norm_weights if norms else 0)


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_bert"])
def test_lora_counts_and_targets(name):
    model = tiny_model(name)
    base_total = count_params(model)[1]
    strat = strategy("lora", r=2, alpha=4)
    strat.prepare(model)
    if name == "tiny_cnn":
        assert strat.targets == ["stem.0", "stage1.0", "stage2.0"]  # every conv
    else:
        assert [t.rsplit(".", 1)[-1] for t in strat.targets] == ["query", "value"] * 2
    added = lora_count(model, 2, strat.targets)
    trainable, total = count_params(model)
    assert trainable == added + head_count(model)
    assert total == base_total + added


def test_lora_starts_at_the_source_model():
    model = tiny_model()
    batch = image_batch()
    model.eval()
    with torch.no_grad():
        before = model(batch)["logits"]
        strategy("lora", r=4).prepare(model)
        torch.testing.assert_close(model(batch)["logits"], before)


def test_adapter_counts_sites_and_identity_at_init():
    model = tiny_model()
    batch = image_batch()
    model.eval()
    with torch.no_grad():
        before = model(batch)["logits"]
    strat = strategy("adapter", reduction_factor=4, norms=False)
    strat.prepare(model)
    assert strat.sites == ["block1", "block2"]  # after each stage, not the stem
    # channels 8 and 16 → bottlenecks 2 and 4: down (c·b + b) + up (b·c + c)
    expected = sum(c * b + b + b * c + c for c, b in ((8, 2), (16, 4)))
    assert count_params(model)[0] == expected + head_count(model)
    with torch.no_grad():
        torch.testing.assert_close(model(batch)["logits"], before)


def test_adapter_on_bert_follows_attention_and_ffn_outputs():
    model = tiny_model("tiny_bert")
    strat = strategy("adapter", reduction_factor=8)
    strat.prepare(model)
    assert strat.sites == [f"block{i}.{s}" for i in (1, 2) for s in ("attention.output.dense", "output.dense")]
    hidden, b = 32, 4
    adapters = 4 * (hidden * b + b + b * hidden + hidden)
    assert count_params(model)[0] == adapters + norm_count(model) + head_count(model)


@pytest.mark.parametrize("source,target,task", [
    ("test/tiny_cnn", "test/tiny_images", "image-classification"),
    ("test/tiny_bert", "test/tiny_ner", "token-classification"),
])
@pytest.mark.parametrize("entry", ["lora: {r: 2, lr: 0.05}", "adapter: {norms: false, lr: 0.05}",
                                   "bitfit: {norms: false, lr: 0.05}"])
def test_parameter_efficient_leaves_frozen_base_unchanged(write_suite, tmp_path, entry, source, target, task):
    (spec,) = suite_runs(write_suite, f"          - {entry}", source, target, task, defaults="epochs: 2, batch_size: 8")
    strat, model, before, _ = train_like_execute(spec, tmp_path)  # ``before``: after prepare (LoRA/adapters in)
    after = dict(model.named_parameters())
    frozen = [n for n, p in after.items() if not p.requires_grad]
    trained = [n for n, p in after.items() if p.requires_grad and not n.startswith("head.")]
    assert frozen and trained
    for n in frozen:
        assert torch.equal(before[n], after[n]), n
    assert any(not torch.equal(before[n], after[n]) for n in trained), "nothing but the head trained"


# --- validate-time checks -------------------------------------------------------------------

@pytest.mark.parametrize("entry,message", [
    ("partial_finetune: {trainable_blocks: 4}", "trainable_blocks=4 but test/tiny_cnn has only 3 blocks"),
    ("gradual_unfreeze: {initial_blocks: 9}", "initial_blocks=9 but test/tiny_cnn has only 3 blocks"),
    ("lora: {r: -1}", "strategies[0].lora.r: Input should be greater than or equal to 1"),
    ("partial_finetune: {trainable_blocks: -2}", "trainable_blocks: Input should be greater than or equal to 0"),
    ("adapter: {reduction_factor: 0}", "reduction_factor: Input should be greater than or equal to 1"),
    ("layerwise_lr_decay: {decay: 1.5}", "decay: Input should be less than or equal to 1"),
    ("l2sp: {alpha: -1}", "alpha: Input should be greater than or equal to 0"),
    ("linear_probe: {solver: newton}", "solver: Input should be 'adamw' or 'lbfgs'"),
    ("linear_probe: {solver: adamw, c_grid: [1, 10]}", "c_grid, max_iter, refit and select_by apply to solver: lbfgs only"),
    ("linear_probe: {solver: lbfgs, c_grid: [0, 1]}", "c_grid[0]: Input should be greater than 0"),
    ("lora: {rank: 4}", "unknown key 'rank'"),
])
def test_bad_strategy_params_fail_at_validate(write_suite, entry, message):
    path = write_suite(f"""
        suite: bad
        seeds: [0]
        pairs:
          - id: p
            source: {{model: test/tiny_cnn}}
            target: {{dataset: test/tiny_images, task: image-classification}}
        strategies:
          - {entry}
        """)
    with pytest.raises(ConfigError) as e:
        load_suite(path)
    text = str(e.value)
    assert message in text
    assert f"{path}:9:" in text  # file and line of the strategy entry


# --- per-architecture defaults on timm's tiny test models (random init, offline) ------------

def timm_model(name: str) -> TransferModel:
    import timm

    from harness.sources.nets import TimmBackbone, timm_input_spec

    body = timm.create_model(name, pretrained=False, num_classes=0)
    return TransferModel(TimmBackbone(body, body.num_features, "image", timm_input_spec(body, 32)), 3)


@pytest.mark.parametrize("arch", ["test_vit", "test_resnet", "test_efficientnet"])
@pytest.mark.parametrize("name", ["lora", "adapter"])
def test_architecture_defaults_and_every_trainable_param_gets_a_gradient(name, arch):
    model = timm_model(arch)
    body = model.backbone.body
    vit = arch == "test_vit"
    if vit:  # ViT: LoRA on the fused qkv; adapters after each attention and MLP output projection
        lora_expected = [n for n, _ in body.named_modules() if n.endswith(".qkv")]
        adapter_leaf = {"attn.proj", "mlp.fc2"}
    else:  # CNN: LoRA on every non-depthwise conv (and Linear); adapters after every stage
        lora_expected = [n for n, m in body.named_modules() if isinstance(m, torch.nn.Linear)
                         or (isinstance(m, torch.nn.Conv2d) and m.groups == 1)]
        stages = [b for b in model.blocks()[1:] if not isinstance(b, torch.nn.ModuleList)]
    strat = strategy(name, norms=False) if name == "adapter" else strategy(name)
    strat.prepare(model)
    if name == "lora":
        assert strat.targets == lora_expected and lora_expected
    elif vit:
        assert {s.split(".", 1)[1] for s in strat.sites} == adapter_leaf
        assert len(strat.sites) == 2 * len(body.blocks)
    else:
        assert len(strat.sites) == len(stages) and all(hasattr(b, "harness_adapter") for b in stages)
    batch = {"pixel_values": torch.rand(2, 3, 32, 32), "labels": torch.tensor([0, 1])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert params_with_grad(model, batch) == trainable  # injected modules are on the forward path


def test_adamw_is_fused_where_it_can_be():
    from harness.run.loop import fused_ok

    cfg = TrainConfig()
    w = torch.nn.Parameter(torch.randn(4, 3))
    opt = build_optimizer([{"params": [w], "weight_decay": 0.0}], cfg)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True
    w.grad = torch.ones_like(w)
    before = w.detach().clone()
    opt.step()
    assert torch.allclose(w, before - cfg.lr * torch.sign(w.grad), atol=1e-6)  # Adam's first step: lr · sign
    meta = torch.nn.Parameter(torch.empty(2, device="meta"))
    assert not fused_ok([{"params": [w, meta]}])  # two devices: the default implementation
    assert build_optimizer([{"params": [w]}], cfg.model_copy(update={"optimizer": "sgd"})).__class__ is torch.optim.SGD
