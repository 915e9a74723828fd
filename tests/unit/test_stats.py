"""Statistics against hand-computed values and against scipy's tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.report.stats import difference, paired_gain, pareto_front, summarize, t975


def test_summary_by_hand():
    # mean 0.72; deviations ±0.02, 0 → variance 0.0008 / 2 → std 0.02;
    # CI half-width t(0.975, 2) · std / √3 = 4.303 · 0.02 / 1.7320508 = 0.0496868
    s = summarize([0.70, 0.72, 0.74])
    assert s.n == 3
    assert s.mean == pytest.approx(0.72, abs=1e-12)
    assert s.std == pytest.approx(0.02, abs=1e-12)
    assert s.ci95 == pytest.approx(0.0496868, abs=1e-6)
    assert (s.low, s.high) == pytest.approx((0.6703132, 0.7696868), abs=1e-6)


def test_summary_edge_cases():
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)
    one = summarize([0.5])
    assert (one.n, one.mean, one.std) == (1, 0.5, 0.0) and math.isnan(one.ci95)
    assert summarize([0.5, None, float("nan"), 0.7]).n == 2  # missing values are not zeros


def test_paired_gain_by_hand():
    # per-seed differences 0.25, 0.24 (seed 2 only on one side) → mean 0.245, std 0.0070711,
    # half-width 12.706 · 0.0070711 / √2 = 0.06353
    g = paired_gain({0: 0.95, 1: 0.96, 2: 0.99}, {0: 0.70, 1: 0.72, 5: 0.1})
    assert g.n == 2
    assert g.mean == pytest.approx(0.245)
    assert g.std == pytest.approx(0.0070711, abs=1e-7)
    assert g.ci95 == pytest.approx(0.06353, abs=1e-5)


def test_pairing_removes_the_seed_effect():
    # Both strategies swing with the seed (a hard split lowers both); the paired gain is exact.
    a = {0: 0.90, 1: 0.80, 2: 0.85}
    b = {0: 0.88, 1: 0.78, 2: 0.83}
    g = paired_gain(a, b)
    assert g.mean == pytest.approx(0.02) and g.std == pytest.approx(0.0, abs=1e-12)
    assert difference(a, b).significant  # unpaired, this 2-point gap would drown in the seed noise
    assert not difference({0: 0.90, 1: 0.80, 2: 0.85}, {7: 0.88, 8: 0.78, 9: 0.83}).significant


def test_welch_by_hand():
    # means 2 and 3, variances 1 and 1, n 3 and 3: se = √(2/3) = 0.8165, df = 4, t = 2.776
    d = difference({0: 1.0, 1: 2.0, 2: 3.0}, {10: 2.0, 11: 3.0, 12: 4.0})
    assert d.method == "welch-t"
    assert d.mean == pytest.approx(-1.0)
    assert d.ci95 == pytest.approx(2.776 * math.sqrt(2 / 3), abs=1e-6)
    assert not d.significant


def test_one_seed_is_untestable_never_significant():
    d = difference({0: 0.99}, {0: 0.10})
    assert d.method == "untestable" and not d.significant


@pytest.mark.parametrize(("df", "exact"), [(1, 12.7062), (2, 4.3027), (10, 2.2281), (30, 2.0423),
                                            (31, 2.0395), (40, 2.0211), (60, 2.0003), (120, 1.9799), (1000, 1.9623)])
def test_t_quantiles(df, exact):
    assert t975(df) == pytest.approx(exact, abs=1e-3)


def test_fractional_df_rounds_down_conservatively():
    assert t975(4.7) == t975(4) > t975(5)
    assert math.isnan(t975(0.5)) and math.isnan(t975(float("nan")))


@st.composite
def near_the_decision(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    """Seed-paired samples ``(a, b)`` of 2 to 25 values (half the time 2 to 5, where one degree of
    freedom moves t₀.₉₇₅ most) whose per-seed differences a − b have sd 0.01 and a paired t
    statistic drawn uniformly within ±1.6 × its critical value t₀.₉₇₅(n−1): many examples near the
    decision, where a threshold off by one degree of freedom or by a factor decides otherwise, and
    none of zero variance (where scipy has no p-value). The sizes and differences come from a
    seed's stream: hypothesis's own numbers cluster at a few values."""
    values = draw(st.lists(st.floats(0, 1), min_size=25, max_size=25))
    # the stream's seed takes the drawn values in too: hypothesis varies them while it keeps
    # re-drawing a few seeds, and each example should be another point
    rng = np.random.default_rng([draw(st.integers(0, 2**32 - 1)), *np.asarray(values).view(np.uint32).tolist()])
    n = int(rng.integers(2, 6) if rng.random() < 0.5 else rng.integers(2, 26))
    b = values[:n]
    z = rng.standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    mean = rng.uniform(-1.6, 1.6) * t975(n - 1) * 0.01 / math.sqrt(n)
    return [v + mean + 0.01 * zi for v, zi in zip(b, z, strict=True)], b


def counted(examples: int, check) -> None:
    """Run the hypothesis property ``check(sample) -> bool`` (False: it stopped short of its
    assertion, on the razor's edge) and fail unless 90 % of the examples reached the assertion:
    a generator whose examples all end early cannot pass."""
    outcomes: list[bool] = []

    @settings(max_examples=examples, deadline=None, database=None)
    @given(near_the_decision())
    def run(sample):
        outcomes.append(check(sample))

    run()
    assert sum(outcomes) >= 0.9 * len(outcomes) and sum(outcomes) >= examples * 2 // 3, \
        f"{sum(outcomes)} of {len(outcomes)} examples reached the assertion"


def test_paired_test_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")

    def check(sample) -> bool:
        a, b = sample
        p = stats.ttest_rel(a, b).pvalue
        if abs(p - 0.05) < 0.002:
            return False  # the table's 3 decimals decide the razor's edge differently
        d = difference(dict(enumerate(a)), dict(enumerate(b)))
        assert d.method == "paired-t" and d.n == len(a)
        assert d.significant == (p < 0.05), (len(a), p, d)
        return True

    counted(100, check)


def test_pareto_front():
    points = {"a": (0.9, 10.0), "b": (0.8, 5.0), "c": (0.7, 6.0), "d": (0.9, 12.0), "e": (0.95, float("nan"))}
    # c is beaten by b (better and cheaper); d by a (as good, dearer); e has no cost
    assert pareto_front(points) == {"a", "b"}
    assert pareto_front({"x": (0.5, 1.0), "y": (0.5, 1.0)}) == {"x", "y"}  # ties dominate nobody
