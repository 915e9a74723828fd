"""Selection without target labels (issue 28): each validator on a tiny problem against an
independent calculation, and every validator recorded by a DA run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.run import validators as v
from harness.run.execute import ExecOptions, execute
from tests.unit.test_strategies_transfer import one, plan

LOGITS = np.array([[2.0, 0.0, -1.0], [0.1, 0.2, 0.3], [5.0, -5.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 3.0, 0.5]])


def probs(row):
    e = [math.exp(x) for x in row]
    return [x / sum(e) for x in e]


def test_entropy_is_minus_the_mean_entropy_of_the_predicted_distributions():
    expected = sum(-sum(p * math.log(p) for p in probs(row)) for row in LOGITS) / len(LOGITS)
    assert v.entropy_score(LOGITS) == pytest.approx(-expected, rel=1e-12)
    # a uniform prediction is the least confident: −ln C
    assert v.entropy_score(np.zeros((4, 3))) == pytest.approx(-math.log(3))


def test_snd_is_the_mean_entropy_of_each_rows_softmax_over_its_similarities_to_the_others():
    tau = 0.05
    p = [probs(row) for row in LOGITS]
    unit = [[x / math.sqrt(sum(y * y for y in row)) for x in row] for row in p]
    total = 0.0
    for i, a in enumerate(unit):
        sims = [sum(x * y for x, y in zip(a, b, strict=True)) / tau for j, b in enumerate(unit) if j != i]
        weights = probs(sims)
        total += -sum(w * math.log(w) for w in weights)
    assert v.snd_score(LOGITS, tau) == pytest.approx(total / len(unit), rel=1e-10)


def test_snd_of_tight_clusters_is_the_log_of_the_neighbours_each_row_has():
    # 4 classes × 10 rows predicted with certainty: each row's 9 same-class neighbours share all its weight
    certain = np.repeat(np.eye(4) * 50, 10, axis=0)
    assert v.snd_score(certain) == pytest.approx(math.log(9), rel=1e-6)


def test_dev_risk_is_the_control_variate_estimate_written_out():
    losses = np.array([0.2, 1.5, 0.7, 0.1, 2.0, 0.4])
    w = np.array([0.5, 2.0, 1.0, 0.2, 3.0, 0.8])
    n = len(w)
    lw = [a * b for a, b in zip(losses, w, strict=True)]
    mean_lw, mean_w = sum(lw) / n, sum(w) / n
    cov = sum((a - mean_lw) * (b - mean_w) for a, b in zip(lw, w, strict=True)) / (n - 1)
    var = sum((b - mean_w) ** 2 for b in w) / (n - 1)
    eta = -cov / var
    assert v.dev_risk(losses, w) == pytest.approx(mean_lw + eta * mean_w - eta, rel=1e-12)
    # weights all 1: the plain mean loss (no variance, no correction)
    assert v.dev_risk(losses, np.ones(n)) == pytest.approx(losses.mean())


def test_density_ratios_recover_a_known_gaussian_shift():
    rng = np.random.default_rng(1)
    # p_s = N(0, 1), p_t = N(1, 1) in the first coordinate (the second is the same noise in both):
    # p_t(x) / p_s(x) = exp(x − 1/2)
    source = np.c_[rng.normal(0, 1, 4000), rng.normal(0, 1, 4000)]
    target = np.c_[rng.normal(1, 1, 2000), rng.normal(0, 1, 2000)]  # unequal sizes: the n_s/n_t factor counts
    at = np.c_[np.linspace(-1, 2, 7), np.zeros(7)]
    weights, info = v.density_ratios(source, target, at)
    np.testing.assert_allclose(np.log(weights), at[:, 0] - 0.5, atol=0.15)
    assert 0.6 < info["domain_accuracy"] < 0.8  # the Bayes accuracy of this pair is Φ(1/2) ≈ 0.69


def test_dev_of_a_target_like_the_source_is_the_mean_validation_loss():
    rng = np.random.default_rng(2)
    source, target, val = rng.normal(0, 1, (600, 5)), rng.normal(0, 1, (600, 5)), rng.normal(0, 1, (200, 5))
    losses = rng.exponential(1.0, 200)
    score, info = v.dev_score(source, target, val, losses)
    assert -score == pytest.approx(losses.mean(), rel=0.05)
    assert info["weights"]["mean"] == pytest.approx(1.0, abs=0.1)


def test_the_logistic_fit_matches_the_closed_form_optimum_of_a_separable_free_problem():
    # one feature, a bias: at the optimum the gradient of Σ log-loss + w²/(2C) is zero
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (300, 1))
    y = (rng.random(300) < 1 / (1 + np.exp(-2 * x[:, 0]))).astype(float)
    theta = v.fit_logistic(x, y, c=1.0)
    p = 1 / (1 + np.exp(-(x[:, 0] * theta[0] + theta[1])))
    assert abs(float(((p - y) * x[:, 0]).sum() + theta[0] / 1.0)) < 1e-6
    assert abs(float((p - y).sum())) < 1e-6


@pytest.mark.parametrize("pair", ["cnn", "bert"])
def test_a_da_run_records_every_validator(write_suite, tmp_path, pair):
    pairs = """\
pairs:
  - id: cnn
    source: {model: test/tiny_cnn}
    target: {dataset: test/tiny_images, task: image-classification, unlabeled: shifted, eval_domain: shifted, n: 160}
  - id: bert
    source: {model: test/tiny_bert}
    target: {dataset: test/tiny_ner, task: token-classification, unlabeled: shifted, eval_domain: shifted}
"""
    runs = plan(write_suite, "  - coral\n  - adabn\n", pairs=pairs)
    for label in ("coral", "adabn"):
        record = execute(one(runs, pair, label), ExecOptions(cache_dir=tmp_path))
        assert record.status == "ok", record.error
        scores = record.metrics["validators"]
        assert set(scores) == set(v.VALIDATORS), record.config["notes"].get("validators")
        assert all(isinstance(scores[k], float) for k in v.VALIDATORS), scores
        assert scores["oracle"] == record.metrics["val"][record.primary_metric]
        assert scores["entropy"] <= 0 and scores["snd"] >= 0 and 0 <= scores["source_val"] <= 1
        assert record.config["notes"]["validators"]["dev"]["components"] >= 1
        assert record.cost["validators_s"] > 0  # timed beside the run, not charged to it


def test_density_ratios_of_separable_domains_are_clipped_and_dev_stays_a_weighted_loss():
    rng = np.random.default_rng(4)
    source, target = rng.normal(0, 1, (300, 3)), rng.normal(8, 1, (300, 3))  # a classifier separates them
    val = np.vstack([rng.normal(0, 1, (50, 3)), rng.normal(8, 1, (5, 3))])
    weights, info = v.density_ratios(source, target, val)
    assert weights.min() >= 1 / v.DEV_CLIP and weights.max() <= v.DEV_CLIP and info["clipped"] > 0.9
    losses = rng.exponential(1.0, len(val))
    risk = v.dev_risk(losses, weights)
    assert abs(risk) < v.DEV_CLIP * losses.max() * 2  # bounded by the clip, whatever the odds were
