"""The hierarchical bootstrap (seeds, then test examples) behind ``harness report --ci bootstrap``."""

from __future__ import annotations

import numpy as np

from harness.report.stats import difference, hierarchical_bootstrap, paired_bootstrap


def test_the_interval_covers_the_true_mean_at_about_the_nominal_rate():
    # each test set is a sample of a population of examples (difficulty q_i, mean 0.7); each seed
    # gets an example right with probability q_i plus the seed's own luck
    rng = np.random.default_rng(1)
    truth, covered, sims = 0.7, 0, 200
    for _ in range(sims):
        q = rng.beta(7, 3, size=300)  # E[q] = 0.7
        seeds = [(rng.random(300) < np.clip(q + rng.normal(0, 0.02), 0, 1)).astype(float) for _ in range(5)]
        lo, hi = hierarchical_bootstrap(seeds, n_boot=300, rng=rng)
        covered += lo <= truth <= hi
    assert 0.88 <= covered / sims <= 0.99, covered / sims


def test_a_deterministic_cell_gets_the_test_sets_width_not_zero():
    correct = np.zeros(359)
    correct[:131] = 1  # 36.49 %, as the probe on the digits domain pair
    lo, hi = hierarchical_bootstrap([correct] * 3)
    assert lo < 131 / 359 < hi
    # about ± 1.96 · sqrt(p(1 − p) / n) = ± 5 points, not the zero width of the t interval over seeds
    assert 0.08 < hi - lo < 0.12


def test_two_cells_a_few_examples_apart_are_not_called_different():
    keys = [f"k{i}" for i in range(359)]
    a_correct = np.zeros(359)
    a_correct[:131] = 1
    b_correct = a_correct.copy()
    b_correct[131:134] = 1  # three more images right: +0.84 points
    a = {s: dict(zip(keys, a_correct, strict=True)) for s in range(3)}
    b = {s: dict(zip(keys, b_correct, strict=True)) for s in range(3)}
    assert difference({s: a_correct.mean() for s in a}, {s: b_correct.mean() for s in b}).significant  # the t-test: yes
    d = paired_bootstrap(b, a)
    assert abs(d.mean - 3 / 359) < 1e-12 and not d.significant and d.method == "bootstrap"
    # … while cells 40 examples apart are
    far = a_correct.copy()
    far[131:171] = 1
    assert paired_bootstrap({s: dict(zip(keys, far, strict=True)) for s in range(3)}, a).significant


def test_pairs_by_content_key_not_position():
    rng = np.random.default_rng(0)
    keys = [f"k{i}" for i in range(200)]
    values = (rng.random(200) < 0.5).astype(float)
    a = {0: dict(zip(keys, values, strict=True)), 1: dict(zip(keys, values, strict=True))}
    shuffled = {s: dict(reversed(list(v.items()))) for s, v in a.items()}  # the same examples, another order
    d = paired_bootstrap(a, shuffled)
    assert d.mean == 0 and d.interval == (0.0, 0.0) and not d.significant


def test_a_perfect_cell_gets_the_exact_binomial_bound_not_a_point():
    lo, hi = hierarchical_bootstrap([np.ones(359)] * 3)
    assert hi == 1.0 and abs(lo - 0.025 ** (1 / 359)) < 1e-15 and lo < 0.995
    lo, hi = hierarchical_bootstrap([np.zeros(100)])
    assert lo == 0.0 and 0.03 < hi < 0.04
