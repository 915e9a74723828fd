"""Statistics over seeds: mean, sample std, Student-t 95% CI, seed-paired gains and tests; and a
hierarchical bootstrap over seeds and test examples (``harness report``'s default CI), for a mean
over examples (accuracy) and for a ratio of summed counts (entity F1). Pure.

Everything here takes plain floats (or ``{seed: value}`` dicts; the bootstrap: numpy arrays of
per-example scores) so it is checked against hand-computed values without pandas or scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# Two-sided 97.5% quantiles of Student's t for df = 1..30 (standard tables, 3 decimals).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]
_Z975 = 1.959963984540054


def t975(df: float) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (nan for df < 1).

    Whole df up to 30 come from the table; a fractional df (Welch) is rounded down, which
    widens the interval (conservative). Beyond 30 the Cornish-Fisher expansion is used; it
    agrees with the exact quantile to 1e-4 there.
    """
    if not df >= 1:  # also catches nan
        return math.nan
    whole = int(math.floor(df))
    if whole <= len(_T975):
        return _T975[whole - 1]
    z = _Z975
    return (z + (z**3 + z) / (4 * whole) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * whole**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * whole**3))


@dataclass(frozen=True)
class Summary:
    """Mean, sample std and the Student-t 95% CI half-width of ``n`` values."""

    n: int
    mean: float
    std: float  # sample std (ddof=1); 0 for one value
    ci95: float  # half-width; nan for n < 2
    # an interval not of the form mean ± ci95 (a bootstrap's percentiles); ci95 is then its half-width.
    # Out of the repr: plot digests hash the repr of a Summary, and a t interval's must stay as it was
    interval: tuple[float, float] | None = field(default=None, repr=False)

    @property
    def low(self) -> float:
        return self.interval[0] if self.interval is not None else self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.interval[1] if self.interval is not None else self.mean + self.ci95


EMPTY = Summary(0, math.nan, math.nan, math.nan)


def summarize(values: Sequence[float | None]) -> Summary:
    """Mean, sample std (ddof=1) and the t-based 95% CI of the non-missing values."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return EMPTY
    mean = math.fsum(vals) / n
    if n == 1:
        return Summary(1, mean, 0.0, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    return Summary(n, mean, std, t975(n - 1) * std / math.sqrt(n))


def paired_gain(a: Mapping[int, float], b: Mapping[int, float]) -> Summary:
    """Gain of ``a`` over ``b`` from seed-paired differences (seeds present in both).

    Runs of one seed share the split and the subsample, so the per-seed difference removes
    the split's luck from the comparison; the CI is the t interval of those differences.
    """
    seeds = sorted(set(a) & set(b))
    return summarize([a[s] - b[s] for s in seeds])


Method = Literal["paired-t", "welch-t", "untestable", "bootstrap"]


@dataclass(frozen=True)
class Difference:
    """``a − b`` with its 95% CI and whether the difference is significant at 5%."""

    mean: float
    ci95: float
    n: int
    method: Method
    interval: tuple[float, float] | None = None  # a bootstrap's percentile interval (not mean ± ci95)

    @property
    def significant(self) -> bool:
        """A two-sided t-test at α = 0.05 rejects "no difference" exactly when the CI excludes 0
        (a bootstrap: when its percentile interval does)."""
        if self.interval is not None:
            return not (math.isnan(self.interval[0]) or self.interval[0] <= 0 <= self.interval[1])
        return self.method != "untestable" and abs(self.mean) > self.ci95


def difference(a: Mapping[int, float], b: Mapping[int, float]) -> Difference:
    """Test ``a`` against ``b`` (``{seed: value}``).

    Seed-paired t-test on the per-seed differences when at least two seeds are shared;
    otherwise Welch's t-test when each side has two values or more; otherwise untestable
    (never called significant: too few seeds to tell).
    """
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        d = summarize([a[s] - b[s] for s in shared])
        return Difference(d.mean, d.ci95, d.n, "paired-t")
    sa, sb = summarize(list(a.values())), summarize(list(b.values()))
    if sa.n >= 2 and sb.n >= 2:
        va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
        se = math.sqrt(va + vb)
        if se == 0:
            return Difference(sa.mean - sb.mean, 0.0, sa.n + sb.n, "welch-t")
        df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
        return Difference(sa.mean - sb.mean, t975(df) * se, sa.n + sb.n, "welch-t")
    mean = sa.mean - sb.mean if sa.n and sb.n else math.nan
    return Difference(mean, math.nan, min(sa.n, sb.n), "untestable")


def pareto_front(points: Mapping[str, tuple[float, float]]) -> set[str]:
    """Names of the points no other point dominates (higher or equal score at lower or equal
    cost, strictly better in one). ``points`` maps a name to ``(score, cost)``; a point with
    a nan coordinate is never on the front."""
    ok = {k: v for k, v in points.items() if not (math.isnan(v[0]) or math.isnan(v[1]))}
    front = set()
    for name, (score, cost_) in ok.items():
        dominated = any(s >= score and c <= cost_ and (s > score or c < cost_)
                        for other, (s, c) in ok.items() if other != name)
        if not dominated:
            front.add(name)
    return front


# --- a bootstrap whose interval includes the test set (Efron & Tibshirani 1993, ch. 13 and 16) ---

N_BOOT = 2000


def _replicates(per_seed: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The cell's mean in ``n_boot`` replicates that resample the seeds and the test examples.

    Every seed is scored on the same examples (the split does not depend on the seed): seeds and
    examples are crossed, not nested. The mean is split into the examples' part (each example's
    score averaged over the seeds) and the seeds' deviations from it; a replicate draws the
    examples with replacement (one draw for every seed: the test set's luck is shared by the
    seeds) and then the seeds' deviations. Resampled raw, a seed's deviation also carries the
    seed-by-example noise the example draw already counts, and the interval comes out too wide
    (Owen 2007, the pigeonhole bootstrap); the deviations are shrunk so that their variance is
    the between-seed variance only (Davison & Hinkley 1997, §3.8). A deterministic cell (every
    seed alike) keeps the examples' width."""
    values = np.stack([np.asarray(v, dtype=float) for v in per_seed])  # (seeds, examples)
    seeds, n = values.shape
    by_example = values.mean(axis=0)
    deviation = values.mean(axis=1) - by_example.mean()
    shrink = 0.0
    if seeds > 1 and n > 1:
        resid = values - values.mean(axis=1, keepdims=True) - by_example + by_example.mean()
        noise = float((resid ** 2).sum()) / ((seeds - 1) * (n - 1))  # seed-by-example variance
        spread = float(deviation.var(ddof=1))
        shrink = math.sqrt(max(0.0, 1 - noise / (n * spread))) if spread > 0 else 0.0
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))  # replicates at a time: memory stays bounded however many examples
    for lo in range(0, n_boot, chunk):
        k = min(chunk, n_boot - lo)
        out[lo:lo + k] = by_example[rng.integers(0, n, size=(k, n))].mean(axis=1) \
            + shrink * deviation[rng.integers(0, seeds, size=(k, seeds))].mean(axis=1)
    return out


def _interval(replicates: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(replicates, [2.5, 97.5])
    return float(lo), float(hi)


def hierarchical_bootstrap(per_seed_correct: list[np.ndarray], n_boot: int = N_BOOT,
                           rng: np.random.Generator | None = None) -> tuple[float, float]:
    """95% percentile interval of a cell's mean score (a fraction, e.g. accuracy) from per-example
    scores per seed (``per_seed_correct[s][i]``: 1 if seed ``s`` got example ``i`` right), aligned
    by example: the seeds and the test examples are resampled (Efron & Tibshirani 1993; the
    crossed design: :func:`_replicates`).

    Unlike the t interval over seeds, a deterministic cell (every seed identical) gets the test
    set's sampling width, not zero."""
    if not per_seed_correct or any(len(v) == 0 for v in per_seed_correct):
        return math.nan, math.nan
    if len({len(v) for v in per_seed_correct}) != 1:
        raise ValueError("every seed must be scored on the same examples (align them by content key)")
    values = np.concatenate([np.asarray(v, dtype=float) for v in per_seed_correct])
    n = len(per_seed_correct[0])
    # every example right (or wrong) on every seed: every replicate is the same, and the percentile
    # interval has no width; the exact binomial (Clopper–Pearson) bound on n examples says how far
    # the test set's luck could go
    if np.all(values == 1):
        return float(0.025 ** (1 / n)), 1.0
    if np.all(values == 0):
        return 0.0, float(1 - 0.025 ** (1 / n))
    return _interval(_replicates(per_seed_correct, n_boot, rng or np.random.default_rng(0)))


def no_entity_f1_bound(gold: int) -> float:
    """The 95% upper bound of entity F1 for a cell that found none of ``gold`` test entities on any
    seed: every resample scores 0, so the bootstrap has no width. Recall's exact binomial
    (Clopper–Pearson) upper bound with 0 hits in ``gold`` trials, R = 1 − 0.025^(1/gold), gives
    F1 ≤ 2R / (1 + R) (precision at most 1)."""
    if gold <= 0:
        return math.nan
    recall = 1 - 0.025 ** (1 / gold)
    return 2 * recall / (1 + recall)


def entity_f1_bootstrap(per_seed_counts: list[np.ndarray], n_boot: int = N_BOOT,
                        rng: np.random.Generator | None = None) -> tuple[float, float]:
    """95% interval of a cell's entity F1 from each test sentence's ``[right, predicted, gold]``
    entity counts per seed (:func:`count_bootstrap` of :func:`harness.metrics.f1_of_counts`). As
    :func:`hierarchical_bootstrap` does for a cell that got every example wrong, a cell that got
    no entity right on any seed (every resample scores 0) gets the exact bound instead of a
    zero-width interval: ``[0, no_entity_f1_bound(gold entities)]``."""
    from harness.metrics import f1_of_counts

    counts = [np.asarray(v, dtype=float) for v in per_seed_counts]
    if counts and all(len(c) for c in counts) and not any(c[:, 0].any() for c in counts):
        return 0.0, no_entity_f1_bound(int(counts[0][:, 2].sum()))
    return count_bootstrap(counts, f1_of_counts, n_boot, rng)


def as_gain(d: Difference) -> Summary:
    """A bootstrapped difference as a gain column's :class:`Summary` (its percentile interval kept)."""
    return Summary(d.n, d.mean, math.nan, d.ci95, d.interval)


def paired_bootstrap(a: Mapping[int, Mapping[str, float]], b: Mapping[int, Mapping[str, float]],
                     n_boot: int = N_BOOT, rng: np.random.Generator | None = None) -> Difference:
    """The difference of two cells scored on the same examples, paired by seed and content key:
    ``a[seed][key]`` is cell a's per-example score. Over the seeds and examples both cells have,
    the per-example differences are resampled hierarchically (seeds, then examples), so an
    example both cells got right (or wrong) adds no noise, and two cells a few examples apart
    are not called different."""
    seeds, keys = _shared(a, b)
    if not keys:  # nothing to pair: never called different
        return Difference(math.nan, math.nan, len(seeds), "untestable")
    diffs = [np.array([a[s][k] - b[s][k] for k in keys], dtype=float) for s in seeds]
    lo, hi = _interval(_replicates(diffs, n_boot, rng or np.random.default_rng(0)))
    return Difference(float(np.mean([d.mean() for d in diffs])), (hi - lo) / 2, len(seeds), "bootstrap", (lo, hi))


def _shared(a: Mapping[int, Mapping[str, object]], b: Mapping[int, Mapping[str, object]]) -> tuple[list[int], list[str]]:
    """The seeds both cells have, and the content keys every one of those seeds scored in both."""
    seeds = sorted(set(a) & set(b))
    keys = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds))) if seeds else []
    return seeds, keys


# --- the same bootstrap for a metric that is not a mean over examples but a ratio of summed counts:
# entity F1 = 2·right / (predicted + gold), summed over the sentences resampled ---

CountStat = Callable[[np.ndarray], np.ndarray]  # summed counts (..., c) → the metric (...)


def _count_replicates(per_seed: Sequence[np.ndarray], stat: CountStat, n_boot: int,
                      rng: np.random.Generator) -> np.ndarray:
    """The cell's mean metric in ``n_boot`` replicates, ``per_seed[s]`` an (examples, c) array of
    per-example counts aligned by example. As :func:`_replicates`, seeds and examples are crossed:
    a replicate draws the examples once for every seed and computes each seed's metric on that
    draw (the examples' part: their mean over the seeds), then adds the seeds' deviations from
    the cell's mean on the whole test set, resampled and shrunk so that their variance is the
    between-seed variance only. The ratio has no per-example residual to measure the
    seed-by-example noise with, so its size is read off the replicates themselves: how much a
    seed's metric moves about the seeds' mean from one draw of the examples to the next."""
    values = np.stack([np.asarray(v, dtype=float) for v in per_seed])  # (seeds, examples, c)
    seeds, n, width = values.shape
    full = stat(values.sum(axis=1))  # (seeds,): each seed's metric on the whole test set
    per_draw = np.empty((n_boot, seeds))
    chunk = max(1, 2_000_000 // max(n * seeds * width, 1))  # bounded memory
    for lo in range(0, n_boot, chunk):
        k = min(chunk, n_boot - lo)
        per_draw[lo:lo + k] = stat(values[:, rng.integers(0, n, size=(k, n))].sum(axis=2)).T
    examples = per_draw.mean(axis=1)
    deviation = full - full.mean()
    shrink = 0.0
    if seeds > 1:
        noise = float((per_draw - examples[:, None]).var(axis=0, ddof=1).mean()) * seeds / (seeds - 1)
        spread = float(deviation.var(ddof=1))
        shrink = math.sqrt(max(0.0, 1 - noise / spread)) if spread > 0 else 0.0
    return examples + shrink * deviation[rng.integers(0, seeds, size=(n_boot, seeds))].mean(axis=1)


def count_bootstrap(per_seed_counts: list[np.ndarray], stat: CountStat, n_boot: int = N_BOOT,
                    rng: np.random.Generator | None = None) -> tuple[float, float]:
    """95% percentile interval of a cell's mean metric when the metric is ``stat`` of per-example
    counts summed over the test set (entity F1 from each sentence's ``[right, predicted, gold]``):
    :func:`hierarchical_bootstrap` for a metric that is not a mean over examples. The sentences
    are resampled, never the words: a sentence's entities are scored together."""
    if not per_seed_counts or any(len(v) == 0 for v in per_seed_counts):
        return math.nan, math.nan
    if len({len(v) for v in per_seed_counts}) != 1:
        raise ValueError("every seed must be scored on the same examples (align them by content key)")
    return _interval(_count_replicates(per_seed_counts, stat, n_boot, rng or np.random.default_rng(0)))


def paired_count_bootstrap(a: Mapping[int, Mapping[str, np.ndarray]], b: Mapping[int, Mapping[str, np.ndarray]],
                           stat: CountStat, n_boot: int = N_BOOT, rng: np.random.Generator | None = None) -> Difference:
    """:func:`paired_bootstrap` for a metric of summed counts: each replicate draws the examples
    both cells scored (paired by seed and content key) and takes the difference of the two cells'
    metrics on that draw, so a sentence both got right adds no noise."""
    seeds, keys = _shared(a, b)
    if not keys:
        return Difference(math.nan, math.nan, len(seeds), "untestable")
    both = [np.concatenate([np.stack([np.asarray(a[s][k], dtype=float) for k in keys]),
                            np.stack([np.asarray(b[s][k], dtype=float) for k in keys])], axis=1) for s in seeds]
    width = both[0].shape[1] // 2

    def diff(summed: np.ndarray) -> np.ndarray:
        return stat(summed[..., :width]) - stat(summed[..., width:])

    lo, hi = _interval(_count_replicates(both, diff, n_boot, rng or np.random.default_rng(0)))
    mean = float(np.mean([diff(d.sum(axis=0)) for d in both]))
    return Difference(mean, (hi - lo) / 2, len(seeds), "bootstrap", (lo, hi))
