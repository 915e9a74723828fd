"""Transferability estimators: scores computed before any training, to rank pretrained sources for a target.

Each score looks at one source model on one labelled target set, either through the features its frozen
backbone gives the target examples (an ``n x d`` array) or through the probabilities its own
classification head gives them (an ``n x Z`` array over the source's ``Z`` classes), and predicts how well
the source will transfer. Higher is better for every score. A score ranks *sources for one target*: its
values depend on the target's size, classes and (for feature scores) the feature dimension, so they are not
comparable across targets, and the scores are not comparable with each other.

Scores from features (any backbone, including ones without a classification head):

* ``logme`` (You et al., ICML 2021): the marginal likelihood (evidence) of a Bayesian linear regression
  from the features to each one-hot label column, maximised over the prior and noise precisions, per
  example. Measures how well a *linear* model on the features explains the labels, penalising complexity.
  Applicable to any size; the most widely validated of the feature scores.
* ``h_score`` (Bao et al., ICIP 2019): ``tr(cov(f)^+ cov(E[f|y]))``, the share of feature variance that
  the class means explain, summed over whitened directions (between 0 and ``K - 1`` for ``K`` classes).
  Cheap, but its covariance estimate is poor when ``n`` is not well above ``d``: it then drifts towards
  ``K - 1`` for every source.
* ``gbc`` (Pándy et al., CVPR 2022): minus the summed Bhattacharyya coefficients (overlaps) between
  per-class diagonal Gaussians fitted in a PCA space of the features; 0 means classes that do not
  overlap. Measures class separability without fitting a classifier.

Scores from the source head's outputs (only for sources trained as classifiers, over any label set):

* ``leep`` (Nguyen et al., ICML 2020): the mean log-likelihood of the target labels under a classifier
  that maps the source's soft predictions to target labels through their empirical conditional
  ``P(y|z)``.
* ``nce`` (Tran et al., ICCV 2019): minus the conditional entropy ``H(Y|Z)`` of the target label given
  the source's hard prediction; 0 when the prediction determines the label.

Degenerate inputs (one class, every class a single example, constant or non-finite features, labels that
are not non-negative integers, rows that are not probability distributions, mismatched shapes) raise
:class:`ScoreError` with a message naming the problem; a score never comes back NaN or infinite.
Feature columns that are constant carry no information and are dropped before scoring (silently: dead
units are routine in backbone features), as are columns constant to float64 resolution (varying by less
than 2^-500 of the matrix's largest magnitude); only a matrix whose every column is constant is an error.
Labels may be any non-negative integers; they are mapped to ``0..K-1`` internally. All arithmetic is
float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

# Eigenvalues of a Gram or covariance matrix at or below max(n, d) * _EPS times the largest are rounding
# noise, i.e. exact zeros (numpy's matrix_rank tolerance for a Hermitian matrix).
_EPS = float(np.finfo(np.float64).eps)
# H-score's pseudo-inverse drops covariance directions below 1e-10 of the largest, after every column is
# scaled to unit range: those are (near-)exact collinearities, whose inverse would amplify rounding noise.
_HSCORE_RCOND = 1e-10
# GBC: a class's variance along a dimension is floored at this fraction of that dimension's overall
# variance, so a singleton class or repeated rows give a finite (tiny) Gaussian rather than a zero one.
_GBC_VAR_FLOOR = 1e-10
# LogME: fixed-point iteration on t = alpha / beta, to this relative change, within these bounds
# (relative to the largest eigenvalue of F^T F), beyond which the evidence no longer changes.
_LOGME_RTOL = 1e-10
_LOGME_MAX_ITER = 1000
_LOGME_T_RANGE = (1e-12, 1e12)
# A feature column whose range is below this, once the matrix is scaled so its largest magnitude is in
# [0.5, 1), is constant to float64 resolution: its squared deviations would underflow. It is dropped too.
_MIN_RANGE = 2.0**-500
# How far a row of source probabilities may sum from 1 (float32 or float16 softmax outputs).
_PROB_SUM_ATOL = 1e-3


class ScoreError(ValueError):
    """Inputs a transferability score cannot be computed from (or a score that came out non-finite)."""


@dataclass(frozen=True)
class ScoreSpec:
    """One registered score: its name, its function, which input it needs and where it was published.

    ``needs`` is ``"features"`` (backbone features of the target examples) or ``"source_probs"`` (the
    source head's softmax outputs on them).
    """

    name: str
    fn: Callable[..., float]
    needs: Literal["features", "source_probs"]
    citation: str


class _Inputs:
    """Validated inputs: labels mapped to ``0..K-1``; features float64 with constant columns dropped and
    scaled by a power of two so the largest magnitude is in [0.5, 1) (exact, and every feature score is
    invariant to a common scale factor, so huge or tiny features cannot overflow or underflow); source
    probabilities float64 with rows renormalised to sum to 1; source labels given as ids mapped to
    ``0..Z-1``, or else the argmax of the source probabilities.

    Statistics used by more than one score are computed once, on first use.
    """

    def __init__(self, labels: np.ndarray, features: np.ndarray | None = None,
                 source_probs: np.ndarray | None = None, source_labels: np.ndarray | None = None) -> None:
        self.labels, self.n_classes = _check_labels(labels)
        n = len(self.labels)
        self.features = None if features is None else _check_features(features, n)
        self.source_probs = self.source_labels = None
        if source_probs is not None:
            probs = _check_probs(source_probs, n)
            self.source_probs = probs / probs.sum(axis=1, keepdims=True)
            self.source_labels = np.argmax(probs, axis=1)
        if source_labels is not None:
            self.source_labels = _remap(_check_int_array(source_labels, "source_labels", n))

    @property
    def n(self) -> int:
        return len(self.labels)

    @cached_property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.n_classes).astype(np.float64)

    @cached_property
    def class_sums(self) -> np.ndarray:
        """Per-class sums of the feature rows, ``K x d``."""
        return _class_sums(self.features, self.labels, self.n_classes)

    @cached_property
    def mean(self) -> np.ndarray:
        return self.class_sums.sum(axis=0) / self.n

    @cached_property
    def centred_class_means(self) -> np.ndarray:
        """Class means minus the overall mean, ``K x d``."""
        return self.class_sums / self.class_counts[:, None] - self.mean

    @cached_property
    def cov(self) -> np.ndarray:
        """Feature covariance (maximum likelihood, divided by n), from the centred matrix: computing it as
        ``F^T F / n - mean mean^T`` would cancel catastrophically for features with a large offset."""
        centred = self.features - self.mean
        return centred.T @ centred / self.n


def _check_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    y = _remap(_check_int_array(labels, "labels", None))
    n_classes = int(y.max()) + 1 if len(y) else 0
    if n_classes < 2:
        raise ScoreError(f"labels must contain at least 2 classes, got {n_classes}")
    if len(y) <= n_classes:
        raise ScoreError(f"need more examples than classes: {len(y)} examples for {n_classes} classes "
                         "(every class has a single example, so there is no within-class spread to score)")
    return y, n_classes


def _check_int_array(values: np.ndarray, name: str, n: int | None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ScoreError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ScoreError(f"{name} must be integer class ids, got dtype {arr.dtype}")
    if n is not None and len(arr) != n:
        raise ScoreError(f"{name} has {len(arr)} entries but labels have {n}: one per example is needed")
    if len(arr) and arr.min() < 0:
        raise ScoreError(f"{name} must be non-negative class ids, got {arr.min()}")
    return arr


def _remap(ids: np.ndarray) -> np.ndarray:
    """Arbitrary non-negative ids as ``0..K-1`` (in sorted order of the ids)."""
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


def _check_real_matrix(values: np.ndarray, name: str, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise ScoreError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ScoreError(f"{name} must be 2-D (one row per example), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ScoreError(f"{name} has {arr.shape[0]} rows but labels have {n} entries: one row per example is needed")
    if arr.shape[1] == 0:
        raise ScoreError(f"{name} has no columns")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ScoreError(f"{name} contain non-finite values (NaN or inf)")
    return arr


def _check_features(features: np.ndarray, n: int) -> np.ndarray:
    f = _check_real_matrix(features, "features", n)
    varying = f.max(axis=0) > f.min(axis=0)
    if not varying.any():
        raise ScoreError(f"every feature column is constant (zero variance across all {n} examples)")
    if not varying.all():
        f = f[:, varying]
    exponent = int(np.frexp(np.abs(f).max())[1])
    if exponent:
        f = np.ldexp(f, -exponent)
    # The column holding the largest magnitude always passes (it varies by at least one ulp of 0.5).
    resolved = f.max(axis=0) - f.min(axis=0) >= _MIN_RANGE
    return f if resolved.all() else f[:, resolved]


def _check_probs(source_probs: np.ndarray, n: int) -> np.ndarray:
    p = _check_real_matrix(source_probs, "source_probs", n)
    if p.min() < 0:
        raise ScoreError(f"source_probs must be non-negative probabilities, got {p.min()}")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > _PROB_SUM_ATOL:
        raise ScoreError(f"source_probs rows must sum to 1 (softmax outputs, not logits): row {worst} sums to "
                         f"{sums[worst]:.6g}")
    return p


def _class_sums(x: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((n_classes, x.shape[1]))
    np.add.at(out, labels, x)
    return out


def _finite(name: str, value: float) -> float:
    """The last guard: a score that came out NaN or infinite is an error naming the score, never a value."""
    if not math.isfinite(value):
        raise ScoreError(f"{name} came out non-finite ({value}) on these inputs; they are too degenerate to score")
    return float(value)


# --- LogME -------------------------------------------------------------------------------------------

def _logme_spectrum(inputs: _Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Everything the evidence depends on, from one symmetric eigendecomposition.

    With ``F = U diag(sqrt(s)) V^T`` (the thin SVD, rank ``r``), returns the ``r`` non-zero eigenvalues
    ``s`` of ``F^T F``, ``x2 = (U^T y_k)^2`` per class (``r x K``) and ``res0 = ||y_k||^2 - sum x2`` (the
    part of each one-hot column outside the column space of F). For ``n > d`` they come from the
    eigenbasis of ``F^T F`` (``U^T y = diag(s)^-1/2 V^T F^T y``), otherwise from that of ``F F^T``, whose
    eigenvectors are ``U`` itself; either way the cost is one ``min(n, d)``-square matrix product and
    eigendecomposition, never an SVD of the ``n x d`` matrix.
    """
    f, n = inputs.features, inputs.n
    if n > f.shape[1]:
        s, v = np.linalg.eigh(f.T @ f)
        keep = s > s[-1] * max(f.shape) * _EPS
        b = v[:, keep].T @ inputs.class_sums.T
        x2 = b**2 / s[keep, None]
        res0 = np.maximum(inputs.class_counts - x2.sum(axis=0), 0.0)
    else:
        s, u = np.linalg.eigh(f @ f.T)
        keep = s > s[-1] * max(f.shape) * _EPS
        x2 = _class_sums(u, inputs.labels, inputs.n_classes).T ** 2
        res0 = x2[~keep].sum(axis=0)  # U is square: a column's norm is split exactly between kept and dropped
        x2 = x2[keep]
    return s[keep], x2, res0


def _logme(inputs: _Inputs) -> float:
    """LogME by the paper's fixed-point iteration (MacKay's evidence updates), all classes at once.

    For class k, with ``t = alpha / beta``: ``gamma = sum s / (s + t)``, ``m = beta A^-1 F^T y`` has
    ``||m||^2 = sum s x2 / (s + t)^2`` and ``||F m - y||^2 = sum x2 t^2 / (s + t)^2 + res0``; the update is
    ``alpha = gamma / ||m||^2``, ``beta = (n - gamma) / ||F m - y||^2``, until t stops changing. At the
    final t the evidence is taken at ``beta = n / (||F m - y||^2 + t ||m||^2)``, ``alpha = t beta``, its
    exact maximum along that ray: the same as the update's beta at a fixed point, and still the right
    value where the maximum is a limit (t -> 0 when ``n <= d`` can fit a class exactly, t -> infinity when
    the features say nothing) and the iteration stops at the bounds on t. The evidence is
    ``d/2 log alpha + n/2 log beta - 1/2 log|A| - beta/2 ||F m - y||^2 - alpha/2 ||m||^2 - n/2 log 2 pi``
    with ``A = alpha I + beta F^T F``, whose ``d`` eigenvalues are ``alpha + beta s`` for the ``r``
    non-zero ``s`` and ``alpha`` for the other ``d - r`` (the reference code's fixed-point version,
    thuml/LogME ``_fit_fixed_point``, drops those ``d - r`` terms, which is wrong when ``n < d`` or F is
    rank-deficient).
    """
    s, x2, res0 = _logme_spectrum(inputs)
    n, d = inputs.n, inputs.features.shape[1]
    r = len(s)
    t_lo, t_hi = _LOGME_T_RANGE[0] * s[-1], _LOGME_T_RANGE[1] * s[-1]

    def stats(t: np.ndarray, cols: np.ndarray | slice) -> tuple[np.ndarray, ...]:
        """gamma, n - gamma, ||m||^2 and ||F m - y||^2 at t for the classes in cols."""
        st = s[:, None] + t
        gamma = (s[:, None] / st).sum(axis=0)
        n_minus_gamma = (n - r) + (t / st).sum(axis=0)  # n - gamma without cancellation when gamma ~ n
        m2 = (s[:, None] * x2[:, cols] / st**2).sum(axis=0)
        res2 = (x2[:, cols] * (t / st) ** 2).sum(axis=0) + res0[cols]
        return gamma, n_minus_gamma, m2, res2

    t = np.ones(inputs.n_classes)
    active = np.arange(inputs.n_classes)
    for _ in range(_LOGME_MAX_ITER):
        gamma, n_minus_gamma, m2, res2 = stats(t[active], active)
        # ||m|| ~ 0 (y orthogonal to the features) makes the ratio overflow: inf, then t's upper bound.
        with np.errstate(divide="ignore", over="ignore"):
            t_new = np.clip(gamma * res2 / (n_minus_gamma * m2), t_lo, t_hi)
        moving = np.abs(t_new - t[active]) > _LOGME_RTOL * t[active]
        t[active] = t_new
        active = active[moving]
        if not len(active):
            break
    _, _, m2, res2 = stats(t, slice(None))
    beta = n / (res2 + t * m2)
    alpha = t * beta
    log_det_a = np.log(alpha + beta * s[:, None]).sum(axis=0) + (d - r) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - log_det_a / 2
                - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * math.log(2 * math.pi))
    return float(np.mean(evidence) / n)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME (You et al., ICML 2021): the mean over classes of the maximised log evidence, per example,
    of a Bayesian linear regression from the features to the class's one-hot column.

    The prior ``m ~ N(0, alpha^-1 I)`` and noise precision ``beta`` are chosen by maximising the evidence
    with the paper's fixed-point iteration, run to convergence (relative change in ``alpha / beta`` below
    1e-10) rather than the reference code's 11 rounds. No intercept is added (as in the paper); constant
    columns, a constant 1 included, are dropped like in every score here.
    """
    return _finite("logme", _logme(_Inputs(labels, features=features)))


# --- H-score -----------------------------------------------------------------------------------------

def _h_score(inputs: _Inputs) -> float:
    """``tr(cov(f)^+ cov(E[f|y]))`` with ``cov(E[f|y]) = sum_k (n_k/n) (mu_k - mu)(mu_k - mu)^T``.

    Columns are first scaled to unit range, which leaves the score unchanged (it is invariant to any
    invertible linear map of the features) but makes the pseudo-inverse's relative cutoff a statement
    about collinearity rather than about the columns' units.
    """
    scale = 1.0 / np.ptp(inputs.features, axis=0)
    cov = inputs.cov * np.outer(scale, scale)
    means = inputs.centred_class_means * scale
    cov_inv = np.linalg.pinv(cov, rcond=_HSCORE_RCOND, hermitian=True)
    weights = inputs.class_counts / inputs.n
    return float(weights @ ((means @ cov_inv) * means).sum(axis=1))


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score (Bao et al., ICIP 2019): ``tr(cov(f)^-1 cov(E[f|y]))``, maximum-likelihood covariances.

    The inverse is a pseudo-inverse (``np.linalg.pinv``, ``hermitian=True``) that drops directions whose
    variance is below 1e-10 of the largest, after scaling every column to unit range: collinear features
    (duplicated columns, ``n <= d``) make the covariance singular, and inverting its rounding-noise
    eigenvalues would make the score explode. The score lies in ``[0, K - 1]``.
    """
    return _finite("h_score", _h_score(_Inputs(labels, features=features)))


# --- GBC ---------------------------------------------------------------------------------------------

def _gbc(inputs: _Inputs, pca_dim: int | None = 64) -> float:
    if pca_dim is not None and (isinstance(pca_dim, bool) or not isinstance(pca_dim, int | np.integer)
                                or pca_dim < 1):
        raise ScoreError(f"pca_dim must be a positive integer or None, got {pca_dim!r}")
    f, y, k = inputs.features, inputs.labels, inputs.n_classes
    if pca_dim is None:
        # Per-dimension scaling leaves every diagonal Bhattacharyya distance unchanged; unit range keeps
        # the variances far from underflow.
        scale = 1.0 / np.ptp(f, axis=0)
        z = (f - inputs.mean) * scale
        means = inputs.centred_class_means * scale
        total_var = z.var(axis=0)
    else:
        lam, vec = np.linalg.eigh(inputs.cov)
        rank = int(np.sum(lam > lam[-1] * max(f.shape) * _EPS))
        top = vec[:, ::-1][:, : min(pca_dim, rank)]
        z = f @ top - inputs.mean @ top
        means = inputs.centred_class_means @ top
        total_var = lam[::-1][: top.shape[1]]
    within = _class_sums((z - means[y]) ** 2, y, k) / inputs.class_counts[:, None]
    var = np.maximum(within, _GBC_VAR_FLOOR * total_var)
    log_var = np.log(var)
    overlap = 0.0
    for i in range(k - 1):
        pooled = (var[i] + var[i + 1:]) / 2
        distance = (((means[i] - means[i + 1:]) ** 2 / pooled).sum(axis=1) / 8
                    + (np.log(pooled) - (log_var[i] + log_var[i + 1:]) / 2).sum(axis=1) / 2)
        overlap += np.exp(-distance).sum()
    return -2.0 * overlap  # each unordered pair counts twice in the sum over i != j


def gbc(features: np.ndarray, labels: np.ndarray, pca_dim: int | None = 64) -> float:
    """GBC (Pándy et al., CVPR 2022), the paper's *diagonal* variant: ``-sum_{i != j} BC(c_i, c_j)``.

    The features are projected by PCA onto their top ``min(pca_dim, rank)`` principal components (rank:
    eigenvalues of the covariance above rounding noise); ``pca_dim=None`` skips PCA and uses the feature
    axes as they are (the diagonal Gaussians are not rotation-invariant, so the two differ). Each class
    gets a Gaussian with its mean and maximum-likelihood per-dimension variance (floored at 1e-10 of the
    dimension's overall variance, so singleton classes stay finite); ``BC = exp(-D_B)`` with the
    Bhattacharyya distance ``D_B = 1/8 sum (mu_i - mu_j)^2 / s + 1/2 sum log(s / sqrt(s_i s_j))``,
    ``s = (s_i + s_j) / 2``. The score is at most 0; 0 means classes that do not overlap at all.
    """
    return _finite("gbc", _gbc(_Inputs(labels, features=features), pca_dim))


# --- LEEP and NCE ------------------------------------------------------------------------------------

def _leep(inputs: _Inputs) -> float:
    theta, y, k = inputs.source_probs, inputs.labels, inputs.n_classes
    joint = _class_sums(theta, y, k) / inputs.n  # P(y, z)
    p_z = joint.sum(axis=0)
    # A source class no example puts mass on has P(z) = 0 and weight 0 in every example's sum: P(y|z) = 0.
    cond = np.divide(joint, p_z, out=np.zeros_like(joint), where=p_z > 0)
    likelihood = np.empty(inputs.n)  # sum_z P(y_i|z) theta(x_i)_z, one class at a time (no n x Z gather)
    for c in range(k):
        rows = y == c
        likelihood[rows] = theta[rows] @ cond[c]
    return float(np.mean(np.log(likelihood)))


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP (Nguyen et al., ICML 2020): ``(1/n) sum_i log sum_z P(y_i|z) theta(x_i)_z``.

    ``source_probs`` holds ``theta(x_i)``, the source head's softmax over its own classes, one row per
    example; rows must sum to 1 within 1e-3 and are renormalised exactly. ``P(y|z) = P(y, z) / P(z)``
    with the empirical joint ``P(y, z) = (1/n) sum_i theta(x_i)_z [y_i = y]``. The score is at most 0.
    """
    return _finite("leep", _leep(_Inputs(labels, source_probs=source_probs)))


def _nce(inputs: _Inputs) -> float:
    z = inputs.source_labels
    counts = np.zeros((inputs.n_classes, int(z.max()) + 1))
    np.add.at(counts, (inputs.labels, z), 1.0)
    count_z = np.broadcast_to(counts.sum(axis=0), counts.shape)
    seen = counts > 0
    return float(np.sum(counts[seen] * np.log(counts[seen] / count_z[seen])) / inputs.n)


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE (Tran et al., ICCV 2019): ``-H(Y|Z) = sum_{y,z} P(y, z) log P(y|z)`` from the empirical joint
    counts of target label ``y`` and the source head's hard prediction ``z`` (argmax), one per example.

    The score is at most 0; 0 when the source's prediction determines the target label.
    """
    return _finite("nce", _nce(_Inputs(labels, source_labels=source_labels)))


# --- registry ----------------------------------------------------------------------------------------

SCORES: dict[str, ScoreSpec] = {
    "logme": ScoreSpec("logme", logme, "features", "You, Liu, Wang, Long, 'LogME: Practical Assessment of "
                       "Pre-trained Models for Transfer Learning', ICML 2021"),
    "h_score": ScoreSpec("h_score", h_score, "features", "Bao, Li, Huang, Zhang, Zheng, Zamir, Guibas, 'An "
                         "Information-Theoretic Approach to Transferability in Task Transfer Learning', ICIP 2019"),
    "gbc": ScoreSpec("gbc", gbc, "features", "Pándy, Agostinelli, Uijlings, Ferrari, Mensink, 'Transferability "
                     "Estimation using Bhattacharyya Class Separability', CVPR 2022"),
    "leep": ScoreSpec("leep", leep, "source_probs", "Nguyen, Hassner, Seeger, Archambeau, 'LEEP: A New Measure "
                      "to Evaluate Transferability of Learned Representations', ICML 2020"),
    "nce": ScoreSpec("nce", nce, "source_probs", "Tran, Nguyen, Hassner, 'Transferability and Hardness of "
                     "Supervised Classification Tasks', ICCV 2019"),
}

# The same scores on inputs validated once (score_all); each public function above validates its own.
_KERNELS: dict[str, Callable[[_Inputs], float]] = {
    "logme": _logme, "h_score": _h_score, "gbc": _gbc, "leep": _leep, "nce": _nce,
}


def score_all(features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None = None) -> dict[str, float]:
    """Every registered score whose input is given, in :data:`SCORES` order.

    The feature scores always; ``leep`` and ``nce`` only with ``source_probs`` (``nce`` on its row-wise
    argmax). Inputs are validated once; any problem raises :class:`ScoreError` before anything is scored.
    """
    inputs = _Inputs(labels, features=features, source_probs=source_probs)
    available = {"features", "source_probs"} if source_probs is not None else {"features"}
    return {name: _finite(name, _KERNELS[name](inputs)) for name, spec in SCORES.items() if spec.needs in available}


# `harness rank`'s finding per source: computed by run/transferability.py, shown by report/transferability.py
@dataclass
class SourceScores:
    pair: str
    source: dict[str, Any]
    target: dict[str, Any]
    n: int
    dim: int
    classes: int
    scores: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # score → why it was not computed
    feature_s: float = 0.0  # the extraction's time (as measured when it ran, on a cache hit too)
    feature_cache_hit: bool = False
    score_s: float = 0.0


PREPROCESSING = ("image_size",)  # each source's input resolution: the same examples, labels and splits


def target_name(target: dict[str, Any]) -> str:
    """A target as a user reads it: the dataset and its settings, but not the resolution a source
    reads it at (sources of several resolutions rank on one target: the same examples and labels)."""
    rest = ", ".join(f"{k}={v}" for k, v in sorted(target.items()) if k not in ("dataset", "task", *PREPROCESSING))
    return f"{target['dataset']}" + (f" ({rest})" if rest else "")


def by_target(results: Sequence[SourceScores]) -> dict[str, list[SourceScores]]:
    groups: dict[str, list[SourceScores]] = {}
    for r in results:
        groups.setdefault(target_name(r.target), []).append(r)
    return groups
