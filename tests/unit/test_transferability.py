"""Transferability scores against independent computations written here (explicit loops, dicts, a generic
optimiser), on small seeded synthetic data; plus behaviour, invariances and degenerate inputs."""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize

from harness import transferability as tr
from harness.transferability import SCORES, ScoreError, gbc, h_score, leep, logme, nce, score_all


def gaussian_classes(rng: np.random.Generator, n: int, d: int, k: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    """n examples of k classes; features are unit Gaussian noise around class centres `separation` apart."""
    labels = rng.integers(0, k, n)
    centres = separation * rng.standard_normal((k, d))
    return centres[labels] + rng.standard_normal((n, d)), labels


# --- references ----------------------------------------------------------------------------------------

def reference_h_score(features: np.ndarray, labels: np.ndarray) -> float:
    n, d = features.shape
    mean = features.mean(axis=0)
    cov = np.zeros((d, d))
    for row in features:
        cov += np.outer(row - mean, row - mean) / n
    between = np.zeros((d, d))
    for c in np.unique(labels):
        rows = features[labels == c]
        class_mean = rows.mean(axis=0)
        between += len(rows) / n * np.outer(class_mean - mean, class_mean - mean)
    return float(np.trace(np.linalg.inv(cov) @ between))


def reference_log_evidence(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """L(alpha, beta) of Bayesian linear regression y ~ N(F m, 1/beta), m ~ N(0, I/alpha), written out."""
    n, d = features.shape
    a = alpha * np.eye(d) + beta * features.T @ features
    m = beta * np.linalg.solve(a, features.T @ y)
    return (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
            - beta / 2 * float(np.sum((features @ m - y) ** 2)) - alpha / 2 * float(m @ m)
            - np.linalg.slogdet(a)[1] / 2)


def reference_logme(features: np.ndarray, labels: np.ndarray) -> float:
    """Maximise the evidence over (log alpha, log beta) with a generic optimiser from several starts."""
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(float)

        def negative(p: np.ndarray, y: np.ndarray = y) -> float:
            return -reference_log_evidence(features, y, math.exp(p[0]), math.exp(p[1]))

        starts = [(0.0, 0.0), (-4.0, 3.0), (4.0, -3.0), (3.0, 3.0), (-3.0, -3.0)]
        evidences.append(max(-minimize(negative, np.array(x0), method="BFGS").fun for x0 in starts))
    return float(np.mean(evidences)) / len(labels)


def reference_leep(probs: np.ndarray, labels: np.ndarray) -> float:
    n, z_count = probs.shape
    joint: dict[tuple[int, int], float] = defaultdict(float)
    for i in range(n):
        for z in range(z_count):
            joint[int(labels[i]), z] += probs[i, z] / n
    p_z = [sum(joint[int(y), z] for y in set(labels.tolist())) for z in range(z_count)]
    total = 0.0
    for i in range(n):
        total += math.log(sum(joint[int(labels[i]), z] / p_z[z] * probs[i, z] for z in range(z_count) if p_z[z] > 0))
    return total / n


def reference_nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    n = len(labels)
    pairs = Counter(zip(labels.tolist(), source_labels.tolist(), strict=True))
    per_z = Counter(source_labels.tolist())
    conditional_entropy = -sum(c / n * math.log(c / per_z[z]) for (_, z), c in pairs.items())
    return -conditional_entropy


def reference_gbc_axes(features: np.ndarray, labels: np.ndarray) -> float:
    """Diagonal-Gaussian GBC on the features' own axes (no PCA), summed over ordered pairs i != j."""
    classes = sorted(set(labels.tolist()))
    fitted = {}
    for c in classes:
        rows = features[labels == c]
        mean = rows.mean(axis=0)
        fitted[c] = (mean, ((rows - mean) ** 2).mean(axis=0))
    total = 0.0
    for a in classes:
        for b in classes:
            if a == b:
                continue
            (mean_a, var_a), (mean_b, var_b) = fitted[a], fitted[b]
            distance = 0.0
            for j in range(features.shape[1]):
                pooled = (var_a[j] + var_b[j]) / 2
                distance += (mean_a[j] - mean_b[j]) ** 2 / (8 * pooled)
                distance += math.log(pooled / math.sqrt(var_a[j] * var_b[j])) / 2
            total += math.exp(-distance)
    return -total


def pca_project(features: np.ndarray, dims: int) -> np.ndarray:
    """The top `dims` principal-component coordinates, from the SVD of the centred matrix."""
    centred = features - features.mean(axis=0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][:dims].T


# --- against the references ----------------------------------------------------------------------------

def test_h_score_matches_the_closed_form_with_a_true_inverse():
    rng = np.random.default_rng(0)
    features, labels = gaussian_classes(rng, 200, 5, 3, separation=1.0)
    labels = np.array([3, 7, 9])[labels]
    assert h_score(features, labels) == pytest.approx(reference_h_score(features, labels), rel=1e-8)


@pytest.mark.parametrize(("n", "d"), [(60, 5), (12, 30)], ids=["n>d", "n<d"])
def test_logme_matches_the_evidence_maximised_by_a_generic_optimiser(n, d):
    rng = np.random.default_rng(1)
    features, labels = gaussian_classes(rng, n, d, 3, separation=1.0)
    assert logme(features, labels) == pytest.approx(reference_logme(features, labels), abs=1e-4)


def test_leep_matches_explicit_joint_tables():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 40) * 5  # ids 0, 5, 10
    probs = rng.dirichlet(np.full(4, 0.5), 40)
    probs[:, 3] = 0.0  # a source class no example puts mass on
    probs /= probs.sum(axis=1, keepdims=True)
    assert leep(probs, labels) == pytest.approx(reference_leep(probs, labels), abs=1e-12)


def test_nce_matches_explicit_joint_counts():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 50)
    source_labels = (labels + rng.integers(0, 3, 50)) * 11  # related to the label, arbitrary ids
    assert nce(source_labels, labels) == pytest.approx(reference_nce(source_labels, labels), abs=1e-12)


def test_gbc_without_pca_matches_per_axis_bhattacharyya():
    rng = np.random.default_rng(4)
    centres = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, -0.5], [0.0, 2.0, 1.0]])
    scales = np.array([[1.0, 2.0, 0.5], [1.5, 0.5, 1.0], [0.7, 1.0, 2.0]])
    labels = rng.integers(0, 3, 300)
    features = centres[labels] + scales[labels] * rng.standard_normal((300, 3))
    assert gbc(features, labels, pca_dim=None) == pytest.approx(reference_gbc_axes(features, labels), rel=1e-10)


def test_gbc_approaches_the_population_bhattacharyya_coefficient():
    rng = np.random.default_rng(5)
    mean_a, sd_a = np.array([0.0, 0.0]), np.array([1.0, 2.0])
    mean_b, sd_b = np.array([1.0, 0.5]), np.array([1.5, 0.5])
    labels = np.repeat([0, 1], 20_000)
    features = np.where(labels[:, None] == 0, mean_a + sd_a * rng.standard_normal((40_000, 2)),
                        mean_b + sd_b * rng.standard_normal((40_000, 2)))
    var_sum = sd_a**2 + sd_b**2
    distance = np.sum((mean_a - mean_b) ** 2 / (4 * var_sum) + np.log(var_sum / (2 * sd_a * sd_b)) / 2)
    assert gbc(features, labels, pca_dim=None) == pytest.approx(-2 * math.exp(-distance), rel=0.02)


def test_gbc_works_in_the_top_principal_components():
    rng = np.random.default_rng(6)
    features, labels = gaussian_classes(rng, 400, 6, 3, separation=1.0)
    features *= np.array([4.0, 3.0, 2.0, 1.0, 0.5, 0.25])  # distinct variances: a well-defined PCA basis
    assert gbc(features, labels, pca_dim=2) == pytest.approx(gbc(pca_project(features, 2), labels, pca_dim=None), rel=1e-8)
    # pca_dim above the dimension: all components, i.e. a rotation, which diagonal Gaussians notice.
    full = gbc(features, labels, pca_dim=64)
    assert full == pytest.approx(gbc(pca_project(features, 6), labels, pca_dim=None), rel=1e-8)
    assert full != pytest.approx(gbc(features, labels, pca_dim=None), rel=1e-3)


def test_gbc_keeps_only_as_many_components_as_the_rank():
    rng = np.random.default_rng(7)
    latent, labels = gaussian_classes(rng, 300, 3, 3, separation=1.0)
    features = latent @ rng.standard_normal((3, 8))  # rank 3 in 8 columns: 5 components are rounding noise
    assert gbc(features, labels) == pytest.approx(gbc(pca_project(features, 3), labels, pca_dim=None), rel=1e-8)


def test_gbc_pca_drops_a_separating_direction_of_low_variance():
    rng = np.random.default_rng(8)
    labels = np.repeat([0, 1], 200)
    features = rng.standard_normal((400, 3)) * np.array([10.0, 10.0, 0.1])
    features[:, 2] += labels  # the classes differ only along the low-variance axis
    assert gbc(features, labels, pca_dim=None) > -0.01  # separable on the raw axes
    assert gbc(features, labels, pca_dim=2) < -1.9  # two overlapping Gaussians once that axis is gone: -2 BC ~ -2


# --- behaviour -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["logme", "h_score", "gbc"])
def test_separated_classes_score_higher_than_overlapping_ones(name):
    score = SCORES[name].fn
    separated = gaussian_classes(np.random.default_rng(9), 300, 8, 4, separation=3.0)
    overlapping = gaussian_classes(np.random.default_rng(9), 300, 8, 4, separation=0.2)
    assert score(*separated) > score(*overlapping)


def test_a_source_whose_prediction_determines_the_label_beats_random_predictions():
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 3, 200)
    source_labels = 2 * labels + rng.integers(0, 2, 200)  # 6 source classes, each implying one target label
    informed = np.full((200, 6), 0.02)
    informed[np.arange(200), source_labels] = 0.9
    random = rng.dirichlet(np.ones(6), 200)
    assert leep(informed, labels) > leep(random, labels)
    assert nce(source_labels, labels) == pytest.approx(0.0, abs=1e-12)  # H(Y|Z) = 0
    assert nce(source_labels, labels) > nce(random.argmax(axis=1), labels)


def test_relabelling_the_classes_changes_no_score():
    rng = np.random.default_rng(11)
    features, labels = gaussian_classes(rng, 120, 6, 3, separation=1.0)
    probs = rng.dirichlet(np.ones(5), 120)
    relabelled = np.array([7, 3, 9])[labels]  # a permutation of the order and other ids
    assert score_all(features, relabelled, probs) == pytest.approx(score_all(features, labels, probs), rel=1e-9)


def test_score_all_gives_each_score_its_own_value_and_leep_nce_only_with_probabilities():
    rng = np.random.default_rng(12)
    features, labels = gaussian_classes(rng, 80, 4, 3, separation=1.0)
    probs = rng.dirichlet(np.ones(5), 80)
    assert list(score_all(features, labels)) == ["logme", "h_score", "gbc"]
    everything = score_all(features, labels, probs)
    assert list(everything) == list(SCORES)
    assert everything == pytest.approx({
        "logme": logme(features, labels), "h_score": h_score(features, labels), "gbc": gbc(features, labels),
        "leep": leep(probs, labels), "nce": nce(probs.argmax(axis=1), labels)}, rel=1e-12)
    assert all(spec.name == name and spec.needs in {"features", "source_probs"} and spec.citation
               for name, spec in SCORES.items())


def test_constant_columns_are_dropped():
    rng = np.random.default_rng(13)
    features, labels = gaussian_classes(rng, 60, 4, 3, separation=1.0)
    padded = np.column_stack([np.zeros(60), features[:, :2], np.full(60, 5.0), features[:, 2:]])
    for name in ["logme", "h_score", "gbc"]:
        assert SCORES[name].fn(padded, labels) == pytest.approx(SCORES[name].fn(features, labels), rel=1e-12), name


def test_logme_and_h_score_do_not_depend_on_the_feature_scale():
    rng = np.random.default_rng(14)
    features, labels = gaussian_classes(rng, 50, 4, 2, separation=1.0)
    for scale in [1e-150, 3.0, 1e150]:
        assert logme(scale * features, labels) == pytest.approx(logme(features, labels), rel=1e-9)
        assert h_score(scale * features, labels) == pytest.approx(h_score(features, labels), rel=1e-9)


def test_h_score_with_a_duplicated_column_stays_finite_and_unchanged():
    rng = np.random.default_rng(15)
    features, labels = gaussian_classes(rng, 100, 3, 3, separation=1.0)
    collinear = np.column_stack([features, features[:, 0] + features[:, 1]])
    assert h_score(collinear, labels) == pytest.approx(h_score(features, labels), rel=1e-8)


# --- degenerate inputs ---------------------------------------------------------------------------------

RNG = np.random.default_rng(16)
F, Y = gaussian_classes(RNG, 30, 3, 3, separation=1.0)
P = RNG.dirichlet(np.ones(4), 30)
NAN_F, INF_P, NEG_P = F.copy(), P.copy(), P.copy()
NAN_F[2, 1] = np.nan
INF_P[0, 0] = np.inf
NEG_P[0, :2] = [-0.1, P[0, 0] + P[0, 1] + 0.1]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: logme(F, np.zeros(30, dtype=int)), "at least 2 classes"),
    (lambda: h_score(F[:3], np.array([4, 1, 2])), "more examples than classes"),
    (lambda: gbc(np.ones((30, 3)), Y), "every feature column is constant"),
    (lambda: logme(NAN_F, Y), "non-finite"),
    (lambda: leep(INF_P, Y), "non-finite"),
    (lambda: h_score(F[:-1], Y), "29 rows but labels have 30"),
    (lambda: score_all(F, Y, P[:-1]), "source_probs has 29 rows"),
    (lambda: nce(Y[:-1], Y), "source_labels has 29 entries"),
    (lambda: logme(F[:, 0], Y), "2-D"),
    (lambda: gbc(F, Y.astype(float)), "integer"),
    (lambda: nce(Y.astype(float), Y), "integer"),
    (lambda: h_score(F, Y - 1), "non-negative"),
    (lambda: leep(P * 1.1, Y), "sum to 1"),
    (lambda: leep(NEG_P, Y), "non-negative"),
    (lambda: score_all(F, Y, np.log(P)), "non-negative"),
    (lambda: gbc(F, Y, pca_dim=0), "pca_dim"),
], ids=["one class", "every class a singleton", "constant features", "nan features", "inf probs",
        "feature rows", "prob rows", "source label count", "1-D features", "float labels",
        "float source labels", "negative labels", "rows not summing to 1", "negative probs", "logits",
        "bad pca_dim"])
def test_degenerate_inputs_raise_a_score_error_naming_the_problem(call, message):
    with pytest.raises(ScoreError, match=message):
        call()


def test_a_non_finite_result_is_an_error_naming_the_score(monkeypatch):
    monkeypatch.setattr(tr, "_h_score", lambda inputs: float("nan"))
    with pytest.raises(ScoreError, match="h_score came out non-finite"):
        h_score(F, Y)
    monkeypatch.setitem(tr._KERNELS, "gbc", lambda inputs: float("inf"))
    with pytest.raises(ScoreError, match="gbc came out non-finite"):
        score_all(F, Y)


VALUES = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5]), st.floats(-1e3, 1e3),
                   st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def small_problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tiny targets that every score must accept — at least two classes, more examples than
    classes, a feature column that varies — with repeated rows, a constant column, extreme
    magnitudes, sparse class ids and zero probabilities."""
    n, d, z = draw(st.integers(5, 9)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    features = draw(arrays(np.float64, (n, d), elements=VALUES))
    features = features[draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n))]  # repeats rows
    if draw(st.booleans()):
        features[:, draw(st.integers(0, d - 1))] = draw(VALUES)
    varies = draw(st.integers(0, d - 1))  # one column keeps two distinct values
    features[:, varies] = draw(st.lists(VALUES, min_size=n, max_size=n).filter(lambda c: len(set(c)) > 1))
    labels = draw(arrays(np.int64, n, elements=st.sampled_from([0, 1, 2, 9])))
    labels[:2] = draw(st.sampled_from([(0, 1), (1, 9), (2, 0), (9, 2)]))  # two classes; ≤ 4 < n
    weights = draw(arrays(np.float64, (n, z), elements=st.one_of(st.just(0.0), st.floats(1e-300, 1.0))))
    weights[:, 0] += weights.sum(axis=1) == 0
    return features, labels, weights / weights.sum(axis=1, keepdims=True)


def test_every_score_is_finite_or_a_score_error():
    """Counted: most examples (valid inputs by construction) reach the finiteness assertion for
    every score, so a generator whose examples all end in ScoreError cannot pass."""
    outcomes = []

    @given(small_problems())
    @settings(max_examples=200, deadline=None, database=None)
    def check(problem):
        features, labels, probs = problem
        calls = {
            "logme": lambda: logme(features, labels), "h_score": lambda: h_score(features, labels),
            "gbc": lambda: gbc(features, labels), "gbc (axes)": lambda: gbc(features, labels, pca_dim=None),
            "leep": lambda: leep(probs, labels), "nce": lambda: nce(probs.argmax(axis=1), labels),
            "score_all": lambda: score_all(features, labels, probs),
        }
        checked = 0
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an overflow or 0/0 on the way is a bug even if guarded later
            for name, call in calls.items():
                try:
                    out = call()
                except ScoreError:
                    continue
                values = list(out.values()) if isinstance(out, dict) else [out]
                assert all(type(v) is float and math.isfinite(v) for v in values), (name, out)
                checked += 1
        outcomes.append(checked == len(calls))

    check()
    assert sum(outcomes) >= 0.8 * len(outcomes), f"{sum(outcomes)} of {len(outcomes)} examples scored by every score"
