"""distill, dann and multitask do what their names promise, on the tiny test models (CPU, seconds)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.errors import ConfigError
from harness.executors.base import run_plan
from harness.plan import expand
from harness.registry import SOURCES, TARGETS
from harness.run.context import RunContext
from harness.run.execute import ExecOptions, build, execute
from harness.run.loop import fit
from harness.run.outputs import soft_targets
from harness.strategies.dann import dann_lambda
from harness.strategies.distill import SoftTokenSplit, distill_loss
from harness.strategies.domain import pooled
from harness.strategies.nets import grad_reverse
from harness.suite import load_suite
from harness.tasks import task_loss

CPU = torch.device("cpu")

PAIRS = """\
pairs:
  - id: cnn
    source: {model: test/tiny_cnn}
    target: {dataset: test/tiny_images, task: image-classification, unlabeled: shifted}
  - id: bert
    source: {model: test/tiny_bert}
    target: {dataset: test/tiny_ner, task: token-classification, unlabeled: shifted}
"""


def suite_text(strategies: str, pairs: str = PAIRS, seeds: str = "[0]") -> str:
    return (f"suite: transfer\nseeds: {seeds}\ndefaults: {{epochs: 1, batch_size: 16, lr: 1e-2, max_train_samples: 32, max_eval_samples: 16}}\n"
            f"{pairs}strategies:\n{strategies}")


def plan(write_suite, strategies: str, **kw):
    return expand(load_suite(write_suite(suite_text(strategies, **kw))))


def one(runs, pair: str, label: str, seed: int = 0):
    return next(r for r in runs if r.pair == pair and r.label == label and r.seed == seed)


def config_errors(write_suite, strategies: str, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        load_suite(write_suite(suite_text(strategies, **kw)))
    return str(e.value)


# ---------------------------------------------------------------------------------- distill


def reference_kd(student: np.ndarray, teacher: np.ndarray, labels: np.ndarray, t: float, mix: float) -> float:
    """The formula written out in numpy, one row at a time."""
    ce, kl = [], []
    for s_row, t_row, y in zip(student, teacher, labels, strict=True):
        log_p = s_row - np.log(np.exp(s_row).sum())
        ce.append(-log_p[y])
        p_t = np.exp(t_row / t) / np.exp(t_row / t).sum()
        p_s = np.exp(s_row / t) / np.exp(s_row / t).sum()
        kl.append((p_t * (np.log(p_t) - np.log(p_s))).sum())
    return (1 - mix) * float(np.mean(ce)) + mix * t * t * float(np.mean(kl))


STUDENT = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0], [-2.0, 1.5, 0.0], [0.3, 0.3, 0.3]])
TEACHER = np.array([[3.0, 0.0, -1.0], [0.0, 1.0, 2.5], [1.0, 2.0, -0.5], [4.0, -2.0, 0.0]])
LABELS = np.array([0, 2, 1, 0])


@pytest.mark.parametrize(("t", "mix"), [(1.0, 0.5), (2.0, 0.5), (4.0, 0.9), (2.0, 0.0), (3.0, 1.0)])
def test_distill_loss_equals_the_formula_on_fixed_logits(t, mix):
    got = distill_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS), t, mix)
    assert float(got) == pytest.approx(reference_kd(STUDENT, TEACHER, LABELS, t, mix), rel=1e-6)


def test_distill_token_loss_averages_over_labelled_positions_only():
    # (B=1, T=5): positions 1 and 3 are labelled words; the rest (-100) must not count.
    student = torch.zeros(1, 5, 3)
    teacher = torch.full((1, 5, 3), 50.0)
    student[0, 1], student[0, 3] = torch.tensor(STUDENT[0]), torch.tensor(STUDENT[1])
    teacher[0, 1], teacher[0, 3] = torch.tensor(TEACHER[0]), torch.tensor(TEACHER[1])
    labels = torch.tensor([[-100, 0, -100, 2, -100]])
    mask = labels != -100
    got = distill_loss(student, teacher, labels, 2.0, 0.7, mask)
    assert float(got) == pytest.approx(reference_kd(STUDENT[:2], TEACHER[:2], LABELS[:2], 2.0, 0.7), rel=1e-6)


def test_distill_loop_loss_is_the_formula(write_suite):
    """The loop adds ``extra_loss`` to its own CE: the sum must be the documented loss."""
    runs = plan(write_suite, "  - full_finetune\n  - distill: {teacher: full_finetune, temperature: 3, mix: 0.25}\n")
    strat, model, data, _ = build(one(runs, "cnn", "distill"), CPU)
    batch = {"labels": torch.tensor(LABELS), "teacher_logits": torch.tensor(TEACHER, dtype=torch.float32)}
    out = {"logits": torch.tensor(STUDENT, dtype=torch.float32)}
    total = task_loss(out["logits"], batch["labels"]) + strat.extra_loss(model, batch, out)
    assert float(total) == pytest.approx(reference_kd(STUDENT, TEACHER, LABELS, 3.0, 0.25), rel=1e-5)


def test_distill_teacher_is_a_node_of_the_plan_and_its_identity_is_hashed(write_suite):
    strategies = "  - full_finetune: {lr: 3e-3}\n  - distill: {teacher: full_finetune}\n"
    runs = plan(write_suite, strategies, seeds="[0, 1]")
    order = [r.run_id for r in runs]
    for pair in ("cnn", "bert"):
        for seed in (0, 1):
            student, teacher = one(runs, pair, "distill", seed), one(runs, pair, "full_finetune", seed)
            assert student.inputs == {"teacher": teacher.run_id} and teacher.run_id in student.depends_on
            assert order.index(teacher.run_id) < order.index(student.run_id)  # the plan lists the teacher first
            assert teacher.exports == ("train_logits",) and not student.exports
    changed = plan(write_suite, strategies.replace("3e-3", "5e-3"), seeds="[0, 1]")
    assert one(changed, "cnn", "distill").run_id != one(runs, "cnn", "distill").run_id


def test_distill_naming_a_missing_teacher_fails_at_validate(write_suite):
    msg = config_errors(write_suite, "  - full_finetune\n  - distill: {teacher: full_finetun}\n")
    assert "teacher 'full_finetun' is not a strategy label of this suite" in msg
    assert "Did you mean: full_finetune?" in msg
    assert "suite.yaml:" in msg and "strategies[1].distill" in msg


def test_distill_teacher_loops_and_bad_source_teachers_fail_at_validate(write_suite):
    msg = config_errors(write_suite, "  - distill: {teacher: b, label: a}\n  - distill: {teacher: a, label: b}\n")
    assert "teacher chain loops: a → b → a" in msg
    pairs = PAIRS.split("  - id: bert")[0]
    msg = config_errors(write_suite, "  - distill: {teacher: {model: test/tiny_cnnn}, teacher_train: {foo: 1}}\n", pairs=pairs)
    assert "teacher.model: unknown model 'tiny_cnnn'. Did you mean: tiny_cnn?" in msg
    assert "teacher_train: unknown key(s) foo" in msg
    msg = config_errors(write_suite, "  - distill: {teacher: {model: test/tiny_bert}}\n", pairs=pairs)
    assert "is a text model; the pair's source is a image model" in msg
    msg = config_errors(write_suite, "  - distill: {teacher: {model: test/tiny_cnn}, teacher_strategy: multitask}\n",
                        pairs=pairs)
    assert "teacher_strategy 'multitask' needs parameters of its own" in msg


@pytest.mark.parametrize("pair", ["cnn"])  # "bert": tests/integration/test_slow_variants.py
def test_distill_student_reads_its_teachers_exported_logits_and_recovers_them_when_the_cache_lost_them(
        write_suite, tmp_path, pair):
    runs = [r for r in plan(write_suite, "  - full_finetune\n  - distill: {teacher: full_finetune}\n") if r.pair == pair]
    options = ExecOptions(cache_dir=tmp_path / "cache")
    done = {r.label: r for r in run_plan(runs, tmp_path / "a", options).done}
    teacher, first = done["full_finetune"], done["distill"]
    assert teacher.status == first.status == "ok", first.error
    info = first.config["notes"]["teacher"]
    assert info["run_id"] == teacher.run_id and info["recomputed"] is False
    primary = first.primary_metric
    assert info["scores"]["test"] == pytest.approx(teacher.metrics[primary])  # the teacher's own run exported them
    # the cache lost the teacher's logits: the student's run recomputes them, and trains the same
    for f in (tmp_path / "cache" / "outputs").iterdir():
        f.unlink()
    student = one(runs, pair, "distill")
    again = execute(student, options, {"teacher": one(runs, pair, "full_finetune")})
    assert again.status == "ok" and again.config["notes"]["teacher"]["recomputed"] is True
    assert again.metrics[primary] == first.metrics[primary] and again.curve == first.curve


def test_a_student_whose_teacher_failed_fails_with_a_record_that_says_why(write_suite, tmp_path):
    runs = [r for r in plan(write_suite, "  - full_finetune: {timeout_s: 1e-6}\n  - distill: {teacher: full_finetune}\n")
            if r.pair == "cnn"]
    done = {r.label: r for r in run_plan(runs, tmp_path / "r", ExecOptions(cache_dir=tmp_path / "cache")).done}
    assert done["full_finetune"].status == "timeout"
    assert done["distill"].status == "failed" and done["distill"].error["type"] == "DependencyFailed"
    assert done["full_finetune"].run_id in done["distill"].error["message"]


# the token pair ("bert", "{model: test/tiny_bert, max_length: 12}"): tests/integration/test_slow_variants.py
@pytest.mark.parametrize(("pair", "teacher"), [("cnn", "{model: test/tiny_cnn, image_size: 12}")])
def test_distill_from_a_source_teacher_with_other_preprocessing(write_suite, tmp_path, pair, teacher):
    """A source-spec teacher (its head fitted by a linear probe) is an aux run of the plan with its
    own preprocessing (another image size; a shorter token limit); the student's examples match
    its exported logits by content."""
    pairs = "pairs:\n  - id: " + next(block for block in PAIRS.split("  - id: ")[1:] if block.startswith(pair))
    runs = plan(write_suite, f"  - distill: {{teacher: {teacher}, teacher_train: {{epochs: 2}}}}\n", pairs=pairs)
    aux = one(runs, pair, "distill-teacher")
    assert aux.role == "aux" and (aux.strategy, aux.source["model"], aux.train["epochs"]) == (
        "linear_probe", f"test/tiny_{pair}", 2)
    done = {r.label: r for r in run_plan(runs, tmp_path / "r", ExecOptions(cache_dir=tmp_path / "cache")).done}
    assert done["distill"].status == "ok", done["distill"].error
    assert done["distill"].config["notes"]["teacher"]["run_id"] == aux.run_id


def test_distill_token_batches_carry_the_teachers_logits_at_labelled_words(write_suite):
    runs = plan(write_suite, "  - full_finetune\n  - distill: {teacher: full_finetune}\n")
    _, model, data, _ = build(one(runs, "bert", "distill"), CPU)
    train = data.splits["train"]
    soft = soft_targets(model, train, CPU, 8)
    split = SoftTokenSplit(train, soft)
    batch = next(split.batches(4, shuffle=True, generator=torch.Generator().manual_seed(3)))
    model.eval()
    with torch.no_grad():
        logits = model(batch)["logits"]
    labelled = batch["labels"] != -100
    assert torch.equal(batch["teacher_mask"], labelled)
    torch.testing.assert_close(batch["teacher_logits"][labelled], logits[labelled])


# ------------------------------------------------------------------------------------- dann


@pytest.mark.parametrize("lambd", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_is_identity_forward_and_flips_and_scales_the_gradient(lambd):
    x = torch.randn(4, 5, requires_grad=True)
    w = torch.randn(4, 5)
    y = grad_reverse(x, lambd)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -lambd * w)


def test_dann_lambda_follows_ganins_schedule():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_lambda(0.1) == pytest.approx(2 / (1 + math.exp(-1)) - 1)
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values) and values[-1] < 1


@pytest.mark.parametrize("pair", ["cnn", "bert"])
def test_dann_backbone_gets_the_reversed_domain_gradient(write_suite, pair):
    """Through dann's extra loss, the domain classifier descends its loss while the backbone
    gets exactly −λ·domain_weight times the gradient it would get without the reversal."""
    runs = plan(write_suite, "  - dann: {domain_weight: 0.5, lambda_max: 0.8}\n")
    strat, model, data, _ = build(one(runs, pair, "dann"), CPU)
    strat.adapt(model, data, RunContext(CPU, None, {}, {}, 0))
    labelled = next(data.splits["train"].batches(8))
    unlabeled = next(data.extra["unlabeled"].batches(8))
    strat.unlabeled = itertools.repeat(unlabeled)
    strat.calls = strat.total  # progress 1: λ = 0.8·(2/(1+e^−10) − 1)
    lambd = 0.8 * dann_lambda(1.0)
    model.eval()  # no dropout: both passes must see the same features

    model.zero_grad()
    strat.domain_classifier.zero_grad()
    strat.extra_loss(model, labelled, model(labelled)).backward()
    reversed_grads = {n: p.grad.clone() for n, p in model.backbone.named_parameters() if p.grad is not None}
    clf_grads = [p.grad.clone() for p in strat.domain_classifier.parameters()]

    model.zero_grad()
    strat.domain_classifier.zero_grad()
    feats = torch.cat([pooled(model(labelled)["features"], labelled), pooled(model(unlabeled)["features"], unlabeled)])
    domain = torch.cat([torch.zeros(len(feats) - len(unlabeled["pixel_values" if pair == "cnn" else "input_ids"])),
                        torch.ones(len(unlabeled["pixel_values" if pair == "cnn" else "input_ids"]))])
    F.binary_cross_entropy_with_logits(strat.domain_classifier(feats).squeeze(-1), domain).backward()
    assert reversed_grads, "the domain loss must reach the backbone"
    for n, g in reversed_grads.items():
        torch.testing.assert_close(g, -lambd * 0.5 * dict(model.backbone.named_parameters())[n].grad, rtol=1e-4, atol=1e-7)
    for g, p in zip(clf_grads, strat.domain_classifier.parameters(), strict=True):
        torch.testing.assert_close(g, 0.5 * p.grad, rtol=1e-4, atol=1e-7)  # not reversed
    assert "domain_classifier_params" in strat.report(model)


def test_dann_without_unlabeled_data_fails_at_validate(write_suite):
    pairs = PAIRS.replace(", unlabeled: shifted", "")
    msg = config_errors(write_suite, "  - dann\n", pairs=pairs)
    assert "pair 'cnn': dann needs unlabeled target-domain data: set `unlabeled:` on target 'test/tiny_images'" in msg
    assert "pair 'bert'" in msg
    load_suite(write_suite(suite_text("  - dann\n")))  # with unlabeled data it validates


@pytest.mark.parametrize("pair", ["cnn", "bert"])
def test_dann_runs_on_images_and_text(write_suite, tmp_path, pair):
    runs = plan(write_suite, "  - dann\n")
    record = execute(one(runs, pair, "dann"), ExecOptions(cache_dir=tmp_path / "cache"))
    assert record.status == "ok", record.error
    notes = record.config["notes"]
    assert notes["unlabeled_examples"] > 0 and notes["domain_loss_last"] > 0
    # λ rises with progress; the last step is one before the end of training
    assert 0 < notes["lambda_final"] < dann_lambda(1.0)


def test_digits_shifted_domain_keeps_labels_and_exposes_unlabeled_train_images():
    backbone = SOURCES.get("test").build("tiny_cnn", {}, pretrained=True)
    load = TARGETS.get("sklearn").load
    base = load("digits", {"image_size": 8}, "image-classification", backbone)
    da = load("digits", {"image_size": 8, "eval_domain": "shifted", "unlabeled": "shifted"}, "image-classification", backbone)
    for k in ("train", "val", "test"):
        assert torch.equal(base.splits[k].tensors["labels"], da.splits[k].tensors["labels"])
    assert torch.equal(base.splits["train"].tensors["pixel_values"], da.splits["train"].tensors["pixel_values"])
    assert not torch.allclose(base.splits["test"].tensors["pixel_values"], da.splits["test"].tensors["pixel_values"])
    unl = da.extra["unlabeled"]
    assert len(unl) == len(da.splits["train"]) and "labels" not in unl.tensors
    assert not base.extra
    # the training domain's own val, for the label-free validators: the original images, labelled
    source_val = da.extra["source_val"]
    assert torch.equal(source_val.tensors["pixel_values"], base.splits["val"].tensors["pixel_values"])
    assert torch.equal(source_val.tensors["labels"], base.splits["val"].tensors["labels"])
    parity = load("digits", {"image_size": 8, "labels": "parity"}, "image-classification", backbone)
    assert parity.label_names == ["even", "odd"]
    torch.testing.assert_close(parity.splits["test"].tensors["labels"], base.splits["test"].tensors["labels"] % 2)


# -------------------------------------------------------------------------------- multitask

MT_PAIRS = """\
pairs:
  - id: cnn
    source: {model: test/tiny_cnn}
    target: {dataset: test/tiny_images, task: image-classification}
    overrides:
      mt:
        tasks:
          - {target: {dataset: test/tiny_images, task: image-classification, num_classes: 2}, weight: 0.5}
          - {target: {dataset: test/tiny_images, task: image-classification, num_classes: 4}, weight: WEIGHT}
  - id: bert
    source: {model: test/tiny_bert}
    target: {dataset: test/tiny_ner, task: token-classification}
    overrides:
      mt:
        tasks:
          - {target: {dataset: test/tiny_ner, task: token-classification}, weight: 0.5}
          - {target: {dataset: test/tiny_ner, task: token-classification, n: 60}, weight: WEIGHT}
"""
MT = "  - multitask: {label: mt, tasks: [{target: {dataset: test/tiny_images, task: image-classification}}]}\n"


def multitask_run(write_suite, pair: str, weight: float, **train):
    runs = plan(write_suite, MT, pairs=MT_PAIRS.replace("WEIGHT", str(weight)))
    strat, model, data, task = build(one(runs, pair, "mt"), CPU)
    model, data = strat.adapt(model, data, RunContext(CPU, None, {}, {}, 0))
    return strat, model, data, task


def params_of(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def changed(before, module) -> bool:
    return any(not torch.equal(before[n], p) for n, p in module.named_parameters())


@pytest.mark.parametrize("pair", ["cnn", "bert"])
def test_multitask_trains_every_head_and_a_zero_weight_head_not_at_all(write_suite, pair):
    strat, model, data, task = multitask_run(write_suite, pair, weight=0.0)
    assert len(strat.heads) == 2
    main, aux, backbone = params_of(model.head), [params_of(h) for h in strat.heads], params_of(model.backbone)
    fit(model, data, task, strat, strat.train.model_copy(update={"max_steps": 3}), CPU, 0)
    assert changed(main, model.head) and changed(backbone, model.backbone)
    assert changed(aux[0], strat.heads[0]), "an auxiliary head with weight 0.5 must train"
    assert not changed(aux[1], strat.heads[1]), "an auxiliary head with weight 0 must stay as initialised"


@pytest.mark.parametrize(("pair", "zero_bias"), [("cnn", False), ("bert", True)])
def test_multitask_auxiliary_heads_are_initialised_like_the_main_head(write_suite, pair, zero_bias):
    strat, model, _, _ = multitask_run(write_suite, pair, weight=0.5)
    # head_init auto: nn.Linear's default on the CNN, N(0, initializer_range) + zero bias on BERT
    for head in [model.head, *strat.heads]:
        assert (torch.count_nonzero(head.bias) == 0) == zero_bias


def test_multitask_loss_weights_scale_each_heads_gradient(write_suite):
    grads = {}
    for weight in (1.0, 0.25):
        torch.manual_seed(0)
        strat, model, data, _ = multitask_run(write_suite, "cnn", weight=weight)
        batches = [next(strat.streams[i]) for i in range(2)]
        strat.streams = [itertools.repeat(b) for b in batches]
        labelled = next(data.splits["train"].batches(8))
        strat.extra_loss(model, labelled, model(labelled)).backward()
        grads[weight] = [[p.grad.clone() for p in h.parameters()] for h in strat.heads]
    for a, b in zip(grads[1.0][1], grads[0.25][1], strict=True):
        torch.testing.assert_close(b, 0.25 * a)
    for a, b in zip(grads[1.0][0], grads[0.25][0], strict=True):
        torch.testing.assert_close(a, b)  # the other task's weight is unchanged


def test_multitask_proportional_sampler_draws_one_task_by_size(write_suite):
    pairs = MT_PAIRS.replace("WEIGHT", "1").replace("num_classes: 4}", "num_classes: 4, n: 400}")
    runs = plan(write_suite, MT.replace("}]}", "}], sampler: proportional}"), pairs=pairs)
    strat, model, data, _ = build(one(runs, "cnn", "mt"), CPU)
    strat.adapt(model, data, RunContext(CPU, None, {}, {}, 0))
    draws = [strat.sampled() for _ in range(400)]
    assert all(len(d) == 1 for d in draws)
    share = sum(d == [1] for d in draws) / len(draws)
    expected = strat.sizes[1] / sum(strat.sizes)
    assert abs(share - expected) < 0.08, (share, expected)


def test_multitask_bad_tasks_fail_at_validate(write_suite):
    pairs = PAIRS.split("  - id: bert")[0]
    tasks = ("[{target: {dataset: test/tiny_imags, task: image-classification}}, "
             "{target: {dataset: test/tiny_ner, task: token-classification}}, "
             "{target: {dataset: test/tiny_images, task: image-classification, split_seed: 3}}]")
    msg = config_errors(write_suite, f"  - multitask: {{tasks: {tasks}}}\n", pairs=pairs)
    assert "tasks[0].target.dataset: unknown dataset 'tiny_imags'. Did you mean: tiny_images?" in msg
    assert "tasks[1].target.task: task 'token-classification' needs a text model" in msg
    assert "tasks[2].target: same dataset as the pair's target but another split" in msg
    msg = config_errors(write_suite, "  - multitask: {tasks: []}\n", pairs=pairs)
    assert "tasks" in msg and "at least 1" in msg


def test_wnut16_coarse_tagset_is_entity_detection():
    backbone = SOURCES.get("test").build("tiny_bert", {}, pretrained=True)
    load = TARGETS.get("packaged").load
    full = load("wnut16", {}, "token-classification", backbone)
    coarse = load("wnut16", {"tagset": "coarse"}, "token-classification", backbone)
    assert coarse.label_names == ["O", "B-ENT", "I-ENT"] and len(full.label_names) > 3
    f, c = full.splits["train"], coarse.splits["train"]
    assert f.input_ids == c.input_ids  # same sentences, same split
    for fl, cl in zip(f.labels[:200], c.labels[:200], strict=True):
        for a, b in zip(fl, cl, strict=True):
            assert (a == -100) == (b == -100)
            if a != -100:
                name = full.label_names[a]
                assert coarse.label_names[b] == ("O" if name == "O" else f"{name[:2]}ENT")


def test_wnut16_noisy_domain_keeps_tags_and_exposes_unlabeled_train_tweets():
    backbone = SOURCES.get("test").build("tiny_bert", {}, pretrained=True)
    load = TARGETS.get("packaged").load
    clean = load("wnut16", {}, "token-classification", backbone)
    shifted = load("wnut16", {"eval_domain": "noisy", "unlabeled": "noisy"}, "token-classification", backbone)
    assert clean.label_names == shifted.label_names and not clean.extra
    assert clean.splits["train"].input_ids == shifted.splits["train"].input_ids  # training stays clean
    for k in ("val", "test"):
        a, b = clean.splits[k], shifted.splits[k]
        assert a.sequences == b.sequences  # same tweets, same gold tags
        assert sum(x != y for x, y in zip(a.input_ids, b.input_ids, strict=True)) > len(a) // 2  # typos
    unl = shifted.extra["unlabeled"]
    assert len(unl) == len(clean.splits["train"])
    assert all(label == -100 for labels in unl.labels for label in labels)
