"""The domain-adaptation family: each loss against an independent computation and on inputs whose
answer is known, and every strategy end to end on images and text (tiny models, CPU, seconds)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from harness.run.domain_gap import proxy_a_distance
from harness.run.execute import ExecOptions, build, execute
from harness.strategies.contrastive import contrastive_loss
from harness.strategies.coral import coral_loss
from harness.strategies.importance_weighting import weighted_extra
from harness.strategies.mmd import mmd2
from harness.strategies.nets import DensityRatio
from harness.strategies.subspace_alignment import Alignment
from harness.tasks import task_loss
from tests.unit.test_strategies_transfer import CPU, PAIRS, config_errors, one, plan

DA = ["coral", "mmd", "importance_weighting", "subspace_alignment"]


def gaussian(n, d, shift=0.0, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


# ------------------------------------------------------------------------------------ coral


def test_coral_equals_the_formula_written_in_numpy():
    s, t = gaussian(40, 6, seed=1), gaussian(30, 6, shift=0.5, scale=2.0, seed=2)
    cs, ct = np.cov(s.numpy(), rowvar=False), np.cov(t.numpy(), rowvar=False)
    expected = ((cs - ct) ** 2).sum() / (4 * 6 * 6)
    assert float(coral_loss(s, t)) == pytest.approx(expected, rel=1e-10)


def test_coral_is_zero_for_identical_batches_and_for_a_shifted_mean():
    s = gaussian(32, 5)
    assert float(coral_loss(s, s.clone())) == pytest.approx(0.0, abs=1e-15)
    assert float(coral_loss(s, s + 3.0)) == pytest.approx(0.0, abs=1e-12)  # covariances only: a mean shift is invisible
    assert float(coral_loss(s, s * 2)) > 0.1


# -------------------------------------------------------------------------------------- mmd


def direct_mmd2(x: np.ndarray, y: np.ndarray, multipliers) -> float:
    """Gretton et al.'s unbiased estimator, one kernel evaluation at a time."""
    joint = np.concatenate([x, y])
    d2 = [((a - b) ** 2).sum() for i, a in enumerate(joint) for j, b in enumerate(joint) if i != j]
    sigma2 = float(np.median(d2))

    def k(a, b):
        return sum(np.exp(-((a - b) ** 2).sum() / (c * sigma2)) for c in multipliers)

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_equals_the_unbiased_estimator_computed_directly():
    x, y = gaussian(12, 4, seed=3), gaussian(9, 4, shift=0.7, seed=4)
    got = float(mmd2(x, y, (0.5, 1.0, 2.0)))
    assert got == pytest.approx(direct_mmd2(x.numpy(), y.numpy(), (0.5, 1.0, 2.0)), rel=1e-9)


def test_mmd_is_near_zero_within_one_distribution_and_grows_with_the_shift():
    base = gaussian(200, 8, seed=5)
    same = float(mmd2(base, gaussian(200, 8, seed=6)))
    shifts = [float(mmd2(base, gaussian(200, 8, shift=s, seed=6))) for s in (0.25, 0.5, 1.0, 2.0)]
    assert abs(same) < 0.01
    assert all(a < b for a, b in zip([same, *shifts], shifts, strict=False)), (same, shifts)
    assert shifts[-1] > 0.5


# ------------------------------------------------------------------------ importance weights


def test_importance_weights_approach_the_true_density_ratio_on_a_gaussian_shift():
    """Source N(0, 1), target N(1, 1) in one dimension: p_t/p_s = exp(x − ½), linear in x on the
    log scale, so the logistic domain classifier can represent it exactly."""
    torch.manual_seed(0)
    ratio = DensityRatio(dim=1, hidden=0, lr=0.02).double()
    gen = torch.Generator().manual_seed(1)
    for _ in range(1500):
        s = torch.randn(512, 1, generator=gen, dtype=torch.float64)
        t = torch.randn(512, 1, generator=gen, dtype=torch.float64) + 1.0
        ratio.update(s, t)
    x = torch.linspace(-1.5, 1.5, 61, dtype=torch.float64).unsqueeze(1)
    got = ratio.weights(x, n_target=61, clip=1e6).double()
    true = torch.exp(x.squeeze(1) - 0.5)
    true = true / true.mean()
    # on the log scale (a ratio's natural one): within 0.1 everywhere, slope 1 within 5 %
    assert float((got.log() - true.log()).abs().max()) < 0.1, (got[::10], true[::10])
    slope = float((got.log()[-1] - got.log()[0]) / 3.0)
    assert slope == pytest.approx(1.0, abs=0.05)
    clipped = ratio.weights(x, n_target=61, clip=1.5)  # clipping, then normalising to mean 1
    assert float(clipped.mean()) == pytest.approx(1.0) and float(clipped.max() / clipped.min()) <= 1.5 / float(
        torch.exp(x.min() - 0.5)) + 1e-6


def test_weighted_extra_turns_the_mean_loss_into_the_weighted_one():
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    w = torch.tensor([0.5, 1.5, 1.0, 2.0, 0.5, 0.5])
    per = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    total = task_loss(logits, labels) + weighted_extra(logits, labels, w)
    assert float(total) == pytest.approx(float((w * per).sum() / 6), rel=1e-6)
    tokens = torch.randn(2, 3, 4)  # token task: each word takes its sentence's weight; -100 ignored
    tlabels = torch.tensor([[0, -100, 2], [1, 1, -100]])
    tw = torch.tensor([2.0, 0.5])
    per = torch.nn.functional.cross_entropy(tokens.flatten(0, 1), tlabels.flatten(), ignore_index=-100, reduction="none")
    expected = (per * torch.tensor([2.0, 2, 2, 0.5, 0.5, 0.5]))[tlabels.flatten() != -100].sum() / 4
    assert float(task_loss(tokens, tlabels) + weighted_extra(tokens, tlabels, tw)) == pytest.approx(float(expected), rel=1e-6)


# ---------------------------------------------------------------------- subspace alignment


def reference_sa(s: np.ndarray, t: np.ndarray, k: int):
    """Fernando et al. written out: standardise, PCA by eigen-decomposition, M = X_Sᵀ X_T."""
    def basis(x):
        z = (x - x.mean(0)) / x.std(0, ddof=1)
        vals, vecs = np.linalg.eigh(np.cov(z, rowvar=False))
        return z, vecs[:, np.argsort(vals)[::-1][:k]]

    zs, xs = basis(s)
    zt, xt = basis(t)
    return zs @ xs @ (xs.T @ xt), zt @ xt


def test_subspace_alignment_equals_the_paper_computed_independently():
    s = gaussian(80, 6, seed=7) @ torch.randn(6, 6, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    t = gaussian(70, 6, seed=9) @ torch.randn(6, 6, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    align = Alignment(s, t, k=3)
    ref_s, ref_t = reference_sa(s.numpy(), t.numpy(), 3)
    got_s, got_t = align.source(s).double().numpy(), align.target(t).double().numpy()
    signs = np.sign((got_t * ref_t).sum(0))  # each PCA direction is defined up to its sign
    np.testing.assert_allclose(got_s * signs, ref_s, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_t * signs, ref_t, rtol=1e-4, atol=1e-4)


def test_subspace_alignment_of_one_domain_with_itself_is_the_identity_map():
    s = gaussian(50, 5, seed=11) * torch.tensor([3.0, 2.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    align = Alignment(s, s.clone(), k=3)
    assert align.divergence() == pytest.approx(0.0, abs=1e-9)
    torch.testing.assert_close(align.source(s), align.target(s))


# ------------------------------------------------------------------------------ contrastive


def hadsell_loss(a, ya, b, yb, margin, exclude_diagonal=False):
    """Hadsell et al. 2006, eq. 4, with plain loops: ½d² per similar pair, ½max(0, m − d)² per
    dissimilar pair, each kind averaged over its pairs, on L2-normalised rows."""
    def unit(v):
        n = sum(x * x for x in v) ** 0.5
        return [x / n for x in v]
    a, b = [unit(v) for v in a.tolist()], [unit(v) for v in b.tolist()]
    pull, push = [], []
    for i, (u, yu) in enumerate(zip(a, ya.tolist(), strict=True)):
        for j, (v, yv) in enumerate(zip(b, yb.tolist(), strict=True)):
            if exclude_diagonal and i == j:
                continue
            d = sum((x - y) ** 2 for x, y in zip(u, v, strict=True)) ** 0.5
            if yu == yv:
                pull.append(0.5 * d * d)
            else:
                push.append(0.5 * max(0.0, margin - d) ** 2)
    return (sum(pull) / len(pull) if pull else 0.0) + (sum(push) / len(push) if push else 0.0)


def test_contrastive_loss_is_hadsells_half_squared_form_computed_with_loops():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    ya, yb = torch.tensor([0, 1, 0]), torch.tensor([0, 1])
    for m in (1.0, 1.5, 2.0):
        assert float(contrastive_loss(a, ya, b, yb, m)) == pytest.approx(hadsell_loss(a, ya, b, yb, m), abs=1e-6)
    # random features, within one batch (the diagonal left out), every pair kind present
    x, y = gaussian(9, 4, seed=5).float(), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    assert float(contrastive_loss(x, y, x, y, 1.2, exclude_diagonal=True)) == pytest.approx(
        hadsell_loss(x, y, x, y, 1.2, exclude_diagonal=True), abs=1e-6)
    # pairs of one class at one point and other classes beyond the margin cost nothing
    far = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert float(contrastive_loss(far, torch.tensor([0, 0, 1]), far, torch.tensor([0, 0, 1]), 1.5,
                                  exclude_diagonal=True)) == pytest.approx(0.0, abs=1e-5)


# ------------------------------------------------------------------------- the domain gap


def test_proxy_a_distance_is_near_zero_within_a_domain_and_two_for_separable_ones():
    same = proxy_a_distance(gaussian(1500, 8, seed=1), gaussian(1500, 8, seed=2))
    assert same["proxy_a_distance"] < 0.3 and same["rows_per_domain"] == 1500
    apart = proxy_a_distance(gaussian(800, 8, seed=1), gaussian(800, 8, shift=6.0, seed=2))
    assert apart["proxy_a_distance"] > 1.95 and apart["domain_error"] < 0.0125


def test_proxy_a_distance_matches_the_bayes_error_of_a_known_shift():
    # N(0, I) vs N(δ·e₁, I): the best classifier errs Φ(−δ/2); PAD = 2(1 − 2Φ(−δ/2))
    from scipy.stats import norm

    source = gaussian(3000, 4, seed=3)
    target = gaussian(3000, 4, seed=4)
    target[:, 0] += 1.0
    expected = 2 * (1 - 2 * norm.cdf(-0.5))
    assert proxy_a_distance(torch.as_tensor(source), torch.as_tensor(target))["proxy_a_distance"] == \
        pytest.approx(expected, abs=0.15)


def test_proxy_a_distance_refuses_too_few_rows_and_mismatched_widths():
    with pytest.raises(ValueError, match="at least 20 examples of each domain"):
        proxy_a_distance(gaussian(10, 4), gaussian(100, 4))
    with pytest.raises(ValueError, match="one width"):
        proxy_a_distance(gaussian(100, 4), gaussian(100, 5))


# ------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("strategy", [*DA, "contrastive"])
@pytest.mark.parametrize("pair", ["cnn", "bert"])
def test_each_strategy_runs_on_images_and_text(write_suite, tmp_path, pair, strategy):
    pairs = PAIRS.replace("unlabeled: shifted}", "unlabeled: shifted, eval_domain: shifted}") \
        if strategy == "subspace_alignment" else PAIRS
    runs = plan(write_suite, f"  - {strategy}\n", pairs=pairs)
    record = execute(one(runs, pair, strategy), ExecOptions(cache_dir=tmp_path / "cache"))
    assert record.status == "ok", record.error
    notes = record.config["notes"]
    if strategy != "contrastive":
        assert record.data["unlabeled_domain"] == "shifted"
    if strategy in ("coral", "mmd"):
        assert notes["discrepancy_last"] >= 0 and notes["progress_steps"] > 0
    if strategy == "importance_weighting":
        assert notes["weights_last"]["min"] > 0 and "domain_loss_last" in notes
    if strategy == "subspace_alignment":
        assert notes["subspace_alignment"]["components"] >= 1
        fit = record.budget["closed_form"]
        assert (fit["solver"], fit["C"]) == ("PCA alignment + L-BFGS logistic regression", notes["lbfgs"]["chosen_C"])
        assert fit["select_by"] == "oracle" and len(fit["choices"]) == len(notes["lbfgs"]["scores"])
    else:
        assert "closed_form" not in record.budget and record.budget["lr"] is not None
    if strategy == "contrastive":
        assert notes["pairs"] == "within source"


@pytest.mark.parametrize("strategy", ["coral", "mmd", "importance_weighting", "subspace_alignment"])
def test_a_da_strategy_without_unlabeled_data_fails_at_validate(write_suite, strategy):
    msg = config_errors(write_suite, f"  - {strategy}\n", pairs=PAIRS.replace(", unlabeled: shifted", ""))
    assert f"pair 'cnn': {strategy} needs unlabeled target-domain data" in msg


def test_subspace_alignment_needs_the_pair_evaluated_on_its_unlabeled_domain(write_suite):
    msg = config_errors(write_suite, "  - subspace_alignment\n")
    assert "evaluated on 'original' but its unlabeled data is 'shifted'" in msg


PAIRS_DIGITS = """\
pairs:
  - id: digits
    source: {model: test/tiny_cnn}
    target: {dataset: sklearn/digits, task: image-classification, image_size: 8, unlabeled: shifted, eval_domain: shifted, target_shots: 2}
"""


def test_contrastive_pairs_across_domains_when_the_target_gives_shots(write_suite, tmp_path):
    runs = plan(write_suite, "  - contrastive\n", pairs=PAIRS_DIGITS)
    strat, model, data, _ = build(runs[0], CPU)
    shots = data.extra["target_labeled"]
    assert len(shots) == 20 and sorted(shots.tensors["labels"].tolist()) == sorted(list(range(10)) * 2)
    record = execute(runs[0], ExecOptions(cache_dir=tmp_path))
    assert record.status == "ok", record.error
    assert record.config["notes"]["pairs"] == "across domains" and record.config["notes"]["target_labeled_examples"] == 20
    # the record says it trained on target labels (the report counts it as adapted, not source only)
    assert (record.data["target_shots"], record.data["target_shots_domain"], record.data["unlabeled_domain"]) == \
        (2, "shifted", None)


def test_target_shots_without_a_domain_to_take_them_from_is_refused(write_suite):
    pairs = PAIRS_DIGITS.replace("unlabeled: shifted, eval_domain: shifted, ", "")
    assert "unlabeled" not in pairs
    msg = config_errors(write_suite, "  - contrastive\n", pairs=pairs)
    assert "target_shots keeps labels of the unlabeled domain's examples: set unlabeled: too" in msg


def test_the_probe_never_fits_on_a_validation_split_of_another_domain(write_suite, tmp_path):
    pairs = PAIRS_DIGITS.replace(", target_shots: 2", "")
    runs = plan(write_suite, "  - linear_probe\n", pairs=pairs)
    record = execute(runs[0], ExecOptions(cache_dir=tmp_path))
    assert record.status == "ok", record.error
    assert record.config["notes"]["lbfgs"]["refit_on_train_val"] is False
    # in its own domain it refits as usual
    plain = plan(write_suite, "  - linear_probe\n", pairs=pairs.replace(", unlabeled: shifted, eval_domain: shifted", ""))
    assert "eval_domain" not in plain[0].target
    assert execute(plain[0], ExecOptions(cache_dir=tmp_path)).config["notes"]["lbfgs"]["refit_on_train_val"] is True
    msg = config_errors(write_suite, "  - linear_probe: {refit: true}\n", pairs=pairs)
    assert "refit: true would fit the head on this pair's validation split" in msg


def test_a_batch_of_one_row_skips_the_discrepancy_not_the_run(write_suite, tmp_path):
    runs = plan(write_suite, "  - coral\n")
    spec = dataclasses.replace(one(runs, "cnn", "coral"), train={**one(runs, "cnn", "coral").train,
                                                                 "max_train_samples": 17})  # 16 + a batch of 1
    record = execute(spec, ExecOptions(cache_dir=tmp_path))
    assert record.status == "ok", record.error
    assert record.config["notes"]["discrepancy_skipped_steps"] == 1


def test_the_probe_of_a_pair_with_unlabeled_data_records_the_gap_once_per_pair(write_suite, tmp_path):
    runs = plan(write_suite, "  - linear_probe\n", seeds="[0, 1]")
    first = execute(one(runs, "cnn", "linear_probe", 0), ExecOptions(cache_dir=tmp_path))
    second = execute(one(runs, "cnn", "linear_probe", 1), ExecOptions(cache_dir=tmp_path))
    gap = first.data["domain_gap"]
    assert 0 <= gap["proxy_a_distance"] <= 2 and gap["rows_per_domain"] >= 20
    assert second.data["domain_gap"] == gap  # read from the cache
    # timed beside the run, not charged to the probe: wall_s leaves it out
    assert first.cost["domain_gap_s"] > second.cost.get("domain_gap_s", 0.0)  # the second only reads the cache
    assert first.cost["wall_s"] > 0
    assert (first.data["train_domain"], first.data["eval_domain"], first.data["dataset"]) == \
        ("original", "original", "test/tiny_images")
    # a pair without unlabeled data measures nothing
    plain = plan(write_suite, "  - linear_probe\n", pairs=PAIRS.replace(", unlabeled: shifted", ""))
    assert execute(one(plain, "cnn", "linear_probe"), ExecOptions(cache_dir=tmp_path)).data["domain_gap"] is None


def test_too_few_rows_for_the_gap_skip_the_measurement_not_the_run(write_suite, tmp_path):
    runs = plan(write_suite, "  - linear_probe\n")
    spec = one(runs, "cnn", "linear_probe")
    spec = dataclasses.replace(spec, train={**spec.train, "max_train_samples": 8})
    record = execute(spec, ExecOptions(cache_dir=tmp_path))
    assert record.status == "ok", record.error
    assert record.data["domain_gap"] is None
    assert "at least 20 examples" in record.config["notes"]["domain_gap_skipped"]


# -------------------------------------------------------- the extra loss reaches the backbone

# Every DA loss that is meant to move the backbone: detached, the strategy silently becomes plain
# fine-tuning, and every end-to-end test above still passes (issue 29). subspace_alignment trains
# no backbone (closed form on frozen features) and has no extra loss.
BACKBONE_LOSSES = ["coral", "mmd", "dann", "contrastive", "importance_weighting"]
TWO_DOMAINS = {"coral", "mmd", "dann"}  # their loss compares the labelled batch with an unlabeled one


def _adapted(write_suite, pair: str, strategy: str):
    """A strategy after ``adapt`` with a fixed unlabeled batch, past its warm-up, and its model."""
    from harness.run.context import RunContext

    runs = plan(write_suite, f"  - {strategy}\n")
    strat, model, data, _ = build(one(runs, pair, strategy), CPU)
    strat.adapt(model, data, RunContext(CPU, None, {}, {}, 0))
    labelled = next(data.splits["train"].batches(8))
    unlabeled = None
    if getattr(strat, "uses_unlabeled", False):
        unlabeled = next(data.extra["unlabeled"].batches(8))
        strat.unlabeled = itertools.repeat(unlabeled)
        strat.calls = strat.total  # dann: λ at its end value; at progress 0 the reversal scales by 0
    if strategy == "importance_weighting":
        # the density ratio starts at 1 for every example (its output layer is zero): give it a slope,
        # as it has once trained, so the re-weighting is more than the plain mean
        with torch.no_grad():
            for p in strat.ratio.net.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    model.eval()  # no dropout: the gradient is the loss's, not noise
    return strat, model, labelled, unlabeled


@pytest.mark.parametrize("strategy", BACKBONE_LOSSES)
@pytest.mark.parametrize("pair", ["cnn", "bert"])
def test_the_extra_loss_alone_moves_the_backbone(write_suite, pair, strategy):
    strat, model, labelled, _ = _adapted(write_suite, pair, strategy)
    model.zero_grad()
    loss = strat.extra_loss(model, labelled, model(labelled))
    assert loss.requires_grad, f"{strategy}'s extra loss is cut from the graph"
    loss.backward()
    def moved(params) -> int:
        return sum(1 for p in params if p.grad is not None and float(p.grad.abs().sum()) > 0)

    assert moved(model.backbone.parameters()), \
        f"{strategy}'s extra loss gives the backbone no gradient (loss {float(loss):.3g})"
    # not one stray parameter: the last block, which the features come out of, is reached
    assert moved(model.backbone.blocks()[-1].parameters())


@pytest.mark.parametrize("strategy", sorted(TWO_DOMAINS))
def test_the_discrepancy_flows_through_both_domains(write_suite, strategy):
    """The unlabeled batch's features are in the graph too: detaching either side of CORAL, MMD or
    DANN leaves a loss that still moves the backbone, through the labelled side alone."""
    strat, model, labelled, unlabeled = _adapted(write_suite, "cnn", strategy)
    labelled = {**labelled, "pixel_values": labelled["pixel_values"].clone().requires_grad_(True)}
    unlabeled = {**unlabeled, "pixel_values": unlabeled["pixel_values"].clone().requires_grad_(True)}
    strat.unlabeled = itertools.repeat(unlabeled)
    strat.extra_loss(model, labelled, model(labelled)).backward()
    for name, batch in (("labelled", labelled), ("unlabeled", unlabeled)):
        g = batch["pixel_values"].grad
        assert g is not None and float(g.abs().sum()) > 0, f"no gradient reaches the {name} batch's inputs"
