"""The bootstrap for entity F1 (a ratio of counts summed over sentences, not a mean over examples):
sentences are resampled whole, the interval covers the truth at about the nominal rate, a
deterministic cell gets a width, and two cells a few sentences apart are not called different."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import Predictions, compute, entity_counts, f1_of_counts
from harness.report.stats import count_bootstrap, entity_f1_bootstrap, paired_count_bootstrap

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_entity_counts_summed_give_seqevals_f1_on_random_sentences():
    rng = np.random.default_rng(0)
    for _ in range(50):
        seqs, seq_index, y_true, y_pred = [], [], [], []
        for s in range(int(rng.integers(1, 12))):
            tags = [TAGS[i] for i in rng.integers(0, 5, int(rng.integers(1, 9)))]
            seqs.append(tags)
            for w in range(int(rng.integers(0, len(tags) + 1))):  # words past max_length: no prediction
                seq_index.append(s)
                y_true.append(TAGS.index(tags[w]))
                y_pred.append(int(rng.integers(0, 5)))
        p = Predictions(np.array(y_true, dtype=np.int64), np.array(y_pred, dtype=np.int64), TAGS,
                        np.array(seq_index, dtype=np.int64), seqs)
        for strict, name in ((True, "seqeval"), (False, "seqeval_conlleval")):
            counts = entity_counts(p, strict)
            assert counts.shape == (len(seqs), 3)
            assert float(f1_of_counts(counts.sum(axis=0))) == pytest.approx(compute([name], p)["f1"], abs=1e-12)


def population(rng, size=100_000):
    """Sentences' [right, predicted, gold] entity counts: 0-3 gold entities, each found with p 0.6,
    plus a false positive now and then. Returns the counts and the population's F1."""
    gold = rng.integers(0, 4, size)
    right = rng.binomial(gold, 0.6)
    predicted = right + rng.binomial(1, 0.25, size)
    counts = np.stack([right, predicted, gold], axis=1)
    return counts, float(f1_of_counts(counts.sum(axis=0)))


def test_the_interval_covers_the_population_f1_at_about_the_nominal_rate():
    rng = np.random.default_rng(3)
    pool, truth = population(rng)
    covered, sims = 0, 200
    for _ in range(sims):
        sample = pool[rng.integers(0, len(pool), 300)]
        seeds = []
        for _s in range(3):  # each seed misses a few more or fewer of the same sentences' entities
            luck = sample.copy()
            drop = rng.random(len(sample)) < 0.03
            luck[drop, 0] = np.maximum(0, luck[drop, 0] - 1)
            seeds.append(luck)
        lo, hi = count_bootstrap(seeds, f1_of_counts, n_boot=300, rng=rng)
        covered += lo <= truth <= hi
    assert 0.88 <= covered / sims <= 0.99, covered / sims


def test_a_deterministic_f1_cell_gets_the_test_sets_width_and_it_matches_a_plain_sentence_bootstrap():
    rng = np.random.default_rng(5)
    sample = population(rng)[0][:479]  # WNUT-16's test split holds 479 tweets
    f1 = float(f1_of_counts(sample.sum(axis=0)))
    lo, hi = count_bootstrap([sample] * 3, f1_of_counts, n_boot=4000, rng=np.random.default_rng(0))
    assert lo < f1 < hi and hi - lo > 0.02
    # an independent plain bootstrap over sentences, with loops
    plain = []
    draw = np.random.default_rng(1)
    for _ in range(4000):
        right = predicted = gold = 0
        for i in draw.integers(0, len(sample), len(sample)):
            right, predicted, gold = right + sample[i, 0], predicted + sample[i, 1], gold + sample[i, 2]
        plain.append(2 * right / (predicted + gold))
    p_lo, p_hi = np.percentile(plain, [2.5, 97.5])
    assert abs(lo - p_lo) < 0.006 and abs(hi - p_hi) < 0.006


def test_two_f1_cells_a_few_sentences_apart_are_tied_and_far_apart_are_not():
    rng = np.random.default_rng(7)
    base = population(rng)[0][:479]
    keys = [f"s{i}" for i in range(len(base))]
    better = base.copy()
    fixable = np.flatnonzero(base[:, 0] < base[:, 2])[:3]
    better[fixable, 0] += 1  # three more entities found, in three sentences
    a = {s: dict(zip(keys, better, strict=True)) for s in range(3)}
    b = {s: dict(zip(keys, base, strict=True)) for s in range(3)}
    d = paired_count_bootstrap(a, b, f1_of_counts)
    assert d.mean > 0 and not d.significant and d.method == "bootstrap"
    much = base.copy()
    much[:, 0] = much[:, 2]  # every gold entity found
    far = paired_count_bootstrap({s: dict(zip(keys, much, strict=True)) for s in range(3)}, b, f1_of_counts)
    assert far.significant and far.interval[0] > 0
    same = paired_count_bootstrap(b, b, f1_of_counts)
    assert same.mean == 0 and not same.significant


def test_entity_f1_bootstrap_bounds_a_cell_with_no_entity_right_and_is_count_bootstrap_otherwise():
    rng = np.random.default_rng(3)
    sample = population(rng)[0][:200]
    gold = int(sample[:, 2].sum())
    # predicted entities, none of them right, on every seed: every resample scores 0
    none = sample.copy()
    none[:, 0] = 0
    lo, hi = entity_f1_bootstrap([none] * 3, n_boot=500)
    recall = 1 - 0.025 ** (1 / gold)  # Clopper–Pearson's upper bound of recall with 0 hits
    assert (lo, hi) == (0.0, pytest.approx(2 * recall / (1 + recall)))
    assert 0 < hi < 0.05
    assert count_bootstrap([none] * 3, f1_of_counts, n_boot=500) == (0.0, 0.0)  # what it replaces
    # one right entity on one seed: the plain count bootstrap, draw for draw
    some = [none, none.copy(), none]
    some[1][0, 0] = 1
    assert entity_f1_bootstrap(some, n_boot=500, rng=np.random.default_rng(7)) == \
        count_bootstrap(some, f1_of_counts, n_boot=500, rng=np.random.default_rng(7))
