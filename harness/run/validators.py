"""Model selection without target labels: the validators' maths, numpy only.

A *validator* scores a trained model with what an unsupervised domain-adaptation user has: the
labelled source domain and the unlabeled target domain. Every score here is **higher = better**
(a risk or an entropy is negated), so choosing a point is one ``max`` whatever the validator:

* ``source_val`` — the primary metric on the source domain's labelled validation split (computed
  by the loop's own metrics; not here).
* ``dev`` — Deep Embedded Validation (You, Wang, Long & Jordan, 2019, "Towards Accurate Model
  Selection in Deep Unsupervised Domain Adaptation", ICML): the source validation loss weighted by
  density ratios w(x) = p_t(x) / p_s(x) from a source-vs-target domain classifier on the model's
  features (clipped to [0.01, 100]: unclipped, domains a classifier separates make the estimate
  meaningless), with the control-variate correction (eq. 5): R = mean(w·ℓ) + η·mean(w) − η,
  η = −Cov(w·ℓ, w) / Var(w). Score: −R.
* ``entropy`` — the mean entropy of the predicted class distribution on unlabeled target data
  (Morerio, Cavazza & Murino, 2018, "Minimal-Entropy Correlation Alignment for Unsupervised Deep
  Domain Adaptation", ICLR: confident target predictions). Score: −H.
* ``snd`` — soft neighbourhood density (Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, 2021,
  "Tune it the Right Way: Unsupervised Validation of Domain Adaptation via Soft Neighborhood
  Density", ICCV): the mean entropy of each target row's softmax over its cosine similarities
  (of the predicted class distributions) to the other rows, at temperature τ = 0.05. Higher: target
  predictions that sit in dense neighbourhoods.
* ``oracle`` — the primary metric on the evaluated domain's labelled validation split (what every
  cell is tuned on by default; not here).

The formulas follow the papers (and, for DEV's risk and SND, what Musgrave, Belongie & Lim 2021,
"Unsupervised Domain Adaptation: A Reality Check", benchmarked in pytorch-adapt); the code is this
module's own.
"""

from __future__ import annotations

import numpy as np

from harness.search import LABEL_FREE

VALIDATORS = (*LABEL_FREE, "oracle")
SND_TEMPERATURE = 0.05
SND_MAX_ROWS = 2000  # an n × n similarity matrix: token rows are subsampled (fixed seed) beyond this
DOMAIN_PCA = 64  # the domain classifier works on this many principal directions of the joint features
DOMAIN_C_GRID = (0.01, 0.1, 1.0, 10.0)
# density ratios are clipped to [1/DEV_CLIP, DEV_CLIP]: where a classifier separates the domains the
# odds reach e^±50, and the control-variate estimate with them is any number at all (measured: 4e16
# on a 3-step smoke run of digits → shifted digits); clipped, it stays a weighted loss
DEV_CLIP = 100.0


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def entropies(p: np.ndarray) -> np.ndarray:
    """Each row's Shannon entropy (nats) of a distribution ``p`` (rows sum to 1)."""
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=1)


def entropy_score(logits: np.ndarray) -> float:
    """−(mean prediction entropy) over the rows of target ``logits`` (higher: more confident)."""
    return -float(entropies(softmax(np.asarray(logits, dtype=np.float64))).mean())


def snd_score(logits: np.ndarray, temperature: float = SND_TEMPERATURE, max_rows: int = SND_MAX_ROWS,
              seed: int = 0) -> float:
    """Soft neighbourhood density of target ``logits``: softmax → L2-normalised rows → cosine
    similarities to every other row / τ → softmax per row → mean entropy."""
    p = softmax(np.asarray(logits, dtype=np.float64))
    if len(p) > max_rows:
        p = p[np.sort(np.random.default_rng(seed).choice(len(p), max_rows, replace=False))]
    if len(p) < 2:
        raise ValueError("SND needs at least 2 target rows")
    u = p / np.linalg.norm(p, axis=1, keepdims=True)
    sim = u @ u.T / temperature
    np.fill_diagonal(sim, -np.inf)  # a row is not its own neighbour
    return float(entropies(softmax(sim)).mean())


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """DEV's control-variate risk estimate from per-example source-validation ``losses`` and their
    density ratios ``weights`` (You et al. 2019, eq. 5)."""
    loss, w = np.asarray(losses, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if loss.shape != w.shape or loss.ndim != 1 or len(loss) < 2:
        raise ValueError(f"DEV needs one weight per loss (≥ 2), got shapes {loss.shape} and {w.shape}")
    weighted = w * loss
    var_w = w.var(ddof=1)
    eta = -np.cov(weighted, w, ddof=1)[0, 1] / var_w if var_w > 0 else 0.0
    return float(weighted.mean() + eta * w.mean() - eta)


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float, iterations: int = 50) -> np.ndarray:
    """L2-regularised logistic regression (weights and a free bias) by Newton's method: minimises
    Σ log-loss + ‖w‖² / (2C). Returns [w, b]."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros(xb.shape[1])
    ridge = np.full(xb.shape[1], 1.0 / c)
    ridge[-1] = 0.0  # the bias is not penalised
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ theta, -50, 50)))
        grad = xb.T @ (p - y) + ridge * theta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(ridge) + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta


def density_ratios(source: np.ndarray, target: np.ndarray, evaluate: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict]:
    """w(x) = p_t(x) / p_s(x) at the rows of ``evaluate``, from a logistic domain classifier told to
    separate ``source`` (0) from ``target`` (1) rows: the odds D/(1−D) times n_s/n_t, clipped to
    [1/``DEV_CLIP``, ``DEV_CLIP``] (``clipped``: the share of rows that were). The features
    are standardised and reduced to their top principal directions (joint); C is chosen on a
    held-out fifth by log-loss. Returns the weights and facts about the classifier."""
    source, target, evaluate = (np.asarray(a, dtype=np.float64) for a in (source, target, evaluate))
    joint = np.vstack([source, target])
    mean, std = joint.mean(0), joint.std(0) + 1e-8
    centred = (joint - mean) / std
    k = min(DOMAIN_PCA, centred.shape[1], len(centred) - 1)
    basis = np.linalg.svd(centred, full_matrices=False)[2][:k].T
    x = centred @ basis
    y = np.r_[np.zeros(len(source)), np.ones(len(target))]
    order = np.random.default_rng(seed).permutation(len(x))
    held, fit = order[: len(x) // 5], order[len(x) // 5:]
    best = None
    for c in DOMAIN_C_GRID:
        theta = fit_logistic(x[fit], y[fit], c)
        logit = np.clip(np.hstack([x[held], np.ones((len(held), 1))]) @ theta, -50, 50)
        p = 1.0 / (1.0 + np.exp(-logit))
        loss = -float(np.mean(y[held] * np.log(np.clip(p, 1e-12, None))
                               + (1 - y[held]) * np.log(np.clip(1 - p, 1e-12, None))))
        if best is None or loss < best[0]:
            best = (loss, c, theta, float(np.mean((p > 0.5) == y[held])))
    _, c, theta, accuracy = best
    z = ((evaluate - mean) / std) @ basis
    logit = np.clip(np.hstack([z, np.ones((len(z), 1))]) @ theta, -50, 50)
    raw = np.exp(logit) * (len(source) / len(target))
    weights = np.clip(raw, 1 / DEV_CLIP, DEV_CLIP)
    return weights, {"C": c, "domain_accuracy": round(accuracy, 4), "components": k,
                     "clipped": round(float(np.mean(weights != raw)), 4)}


def dev_score(source_train: np.ndarray, target: np.ndarray, source_val: np.ndarray,
              val_losses: np.ndarray, seed: int = 0) -> tuple[float, dict]:
    """−DEV risk: density ratios of the source validation rows (a domain classifier on source
    training vs target features) weighting their losses, with the control variate."""
    weights, info = density_ratios(source_train, target, source_val, seed)
    info["weights"] = {"mean": round(float(weights.mean()), 4), "max": round(float(weights.max()), 4)}
    return -dev_risk(val_losses, weights), info
