"""Transferability estimators: how well a backbone's frozen features suit a labelled sample, without training.

Each takes ``features`` (N × D) and integer ``labels`` (N,) and returns one number, higher is better. All work in
float64 on numpy arrays.

- :func:`logme` — the log marginal evidence of a Bayesian linear model from the features to each one-hot label
  column, per example, averaged over classes (You et al., 2021, "LogME: Practical Assessment of Pre-trained Models
  for Transfer Learning"). The prior precision α and noise precision β are maximised by the paper's fixed-point
  updates. Unlike the reference implementation, log|A| keeps the ``(D − r)·log α`` term of the D − r zero
  eigenvalues when the feature matrix has rank r < D (fewer examples than dimensions): dropping it rewards wide
  features for nothing.
- :func:`hscore_shrinkage` — the H-score (Bao et al., 2019), tr(Σ⁻¹ Σ_between), with the feature covariance Σ
  estimated by Ledoit–Wolf shrinkage (Ibrahim et al., 2022), which keeps it stable when N is not much above D.
- :func:`knn_loo_accuracy` — leave-one-out accuracy of a k-nearest-neighbour vote under cosine similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOGME_MAX_ITERATIONS = 1000
LOGME_TOLERANCE = 1e-6
SWITCHED_OFF = 1e12     # α beyond this multiple of β·σ_max leaves the weights no room: the α → ∞ limit


@dataclass(frozen=True)
class LogMEFit:
    """LogME for one target column: the evidence per example and the precisions that maximise it."""

    evidence: float
    alpha: float
    beta: float
    iterations: int
    converged: bool


def _spectrum(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U, s): left singular vectors and singular values of the features, zero values dropped."""
    u, s, _ = np.linalg.svd(features, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(features.shape) * np.finfo(np.float64).eps
    return u[:, keep], s[keep]


def logme_target(features: np.ndarray, target: np.ndarray, *, spectrum=None) -> LogMEFit:
    """LogME of one real-valued target column (for a class: its one-hot indicator)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    n, d = f.shape
    u, s = spectrum if spectrum is not None else _spectrum(f)
    sigma = s ** 2                       # the non-zero eigenvalues of FᵀF
    rank = sigma.size
    z = u.T @ y                          # y in the basis of F's column space
    outside = max(float(y @ y - z @ z), 0.0)   # the part of y no linear map of the features reaches
    if rank == 0 or not np.any(z):
        return _features_switched_off(y, 0)
    alpha, beta = 1.0, 1.0
    converged, iterations = False, 0
    while not converged and iterations < LOGME_MAX_ITERATIONS:
        iterations += 1
        gamma = float(np.sum(beta * sigma / (alpha + beta * sigma)))
        m_sq = float(np.sum((beta * s * z / (alpha + beta * sigma)) ** 2))        # |m|²
        residual = float(np.sum((alpha * z / (alpha + beta * sigma)) ** 2)) + outside   # |y - F m|²
        new_alpha = gamma / max(m_sq, 1e-300)
        new_beta = (n - gamma) / max(residual, 1e-300)
        if new_alpha > SWITCHED_OFF * new_beta * sigma.max():
            # The evidence is largest with the prior pinning the weights at zero: the features explain nothing
            # the noise does not. That boundary optimum has a closed form.
            return _features_switched_off(y, iterations)
        if not (0 < new_alpha < math.inf and 0 < new_beta < math.inf):
            # With as many dimensions as examples the features can fit y exactly and the noise precision runs
            # off to infinity; the evidence at the last finite step is where the fixed point was heading.
            break
        converged = abs(new_alpha / alpha - 1) + abs(new_beta / beta - 1) < LOGME_TOLERANCE
        alpha, beta = new_alpha, new_beta
    m_sq = float(np.sum((beta * s * z / (alpha + beta * sigma)) ** 2))
    residual = float(np.sum((alpha * z / (alpha + beta * sigma)) ** 2)) + outside
    log_det_a = float(np.sum(np.log(alpha + beta * sigma))) + (d - rank) * math.log(alpha)
    evidence = (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
                - beta / 2 * residual - alpha / 2 * m_sq - log_det_a / 2)
    return LogMEFit(evidence / n, alpha, beta, iterations, converged)


def _features_switched_off(y: np.ndarray, iterations: int) -> LogMEFit:
    """The evidence in the limit α → ∞: the α terms cancel and y is noise with precision β = N / |y|²."""
    n = y.size
    beta = n / max(float(y @ y), 1e-300)
    evidence = n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi) - n / 2
    return LogMEFit(evidence / n, math.inf, beta, iterations, True)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of integer class ``labels`` (N,), or of a multi-label 0/1 matrix (N × K): the mean over columns."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    targets = labels if labels.ndim == 2 else (labels[:, None] == np.unique(labels)[None, :])
    # A column that is constant over the sample (a label no example has, or every example) carries no evidence.
    columns = [k for k in range(targets.shape[1]) if 0 < targets[:, k].sum() < len(targets)]
    spectrum = _spectrum(f)
    return float(np.mean([logme_target(f, targets[:, k].astype(np.float64), spectrum=spectrum).evidence
                          for k in columns])) if columns else float("nan")


def log_evidence_dense(features: np.ndarray, target: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, α, β) per example, computed directly: y ~ N(0, FFᵀ/α + I/β). For tests and checks."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    n = f.shape[0]
    covariance = f @ f.T / alpha + np.eye(n) / beta
    _, log_det = np.linalg.slogdet(covariance)
    return float(-(n * math.log(2 * math.pi) + log_det + y @ np.linalg.solve(covariance, y)) / 2 / n)


def ledoit_wolf(features: np.ndarray) -> tuple[np.ndarray, float]:
    """The Ledoit–Wolf shrunk covariance of ``features`` and its shrinkage intensity in [0, 1].

    The shrinkage target is μI with μ the mean variance; the intensity is Ledoit and Wolf's (2004) estimate of
    the one that minimises the expected squared Frobenius error.
    """
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    x = x - x.mean(axis=0)
    sample = x.T @ x / n
    mu = float(np.trace(sample)) / d
    target_distance = float(np.sum((sample - mu * np.eye(d)) ** 2)) / d            # d² in the paper
    # How far each example's outer product strays from the sample covariance, on average (b̄² in the paper).
    squared_norms = np.sum(x ** 2, axis=1)
    spread = float(np.sum(squared_norms ** 2) / n - np.sum(sample ** 2)) / (n * d)
    shrinkage = 0.0 if target_distance <= 0 else min(max(spread, 0.0), target_distance) / target_distance
    return (1 - shrinkage) * sample + shrinkage * mu * np.eye(d), shrinkage


def hscore_shrinkage(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score tr(Σ⁻¹ Σ_between) with Σ the Ledoit–Wolf covariance of the features."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    covariance, _ = ledoit_wolf(f)
    centred = f - f.mean(axis=0)
    classes = np.unique(labels)
    means = np.stack([centred[labels == c].mean(axis=0) for c in classes])          # K × D
    weights = np.array([(labels == c).mean() for c in classes])
    solved = np.linalg.solve(covariance, means.T)                                    # Σ⁻¹ μ_c, D × K
    return float(np.sum(weights * np.einsum("kd,dk->k", means, solved)))


def knn_loo_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out accuracy of a k-NN majority vote on cosine similarity; ties go to the lowest label index,
    as in scikit-learn."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    n = f.shape[0]
    k = min(k, n - 1)
    if k < 1:
        return float("nan")
    unit = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)          # an example never votes for itself
    neighbours = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    classes, codes = np.unique(labels, return_inverse=True)
    votes = np.zeros((n, classes.size))
    np.add.at(votes, (np.repeat(np.arange(n), k), codes[neighbours].ravel()), 1)
    return float(np.mean(votes.argmax(axis=1) == codes))


ESTIMATORS = {"logme": logme, "hscore": hscore_shrinkage, "knn": knn_loo_accuracy}
ESTIMATOR_LABELS = {"logme": "LogME", "hscore": "H-score", "knn": "k-NN"}
MULTI_LABEL_ESTIMATORS = ("logme",)     # defined for a 0/1 label matrix; the others need one label per example
