"""Transferability estimators: how well a backbone's frozen features suit a labelled sample, without training.

Each takes ``features`` (N × D) and integer ``labels`` (N,) and returns one number, higher is better;
:data:`ESTIMATORS` names them, :data:`ESTIMATOR_LABELS` says how to show them, and :data:`MULTI_LABEL_ESTIMATORS`
are those that also take a multi-label 0/1 matrix (N × K). All work in float64 on numpy arrays. Where one is
undefined (constant features, say) it returns NaN or raises ``np.linalg.LinAlgError`` or ``ValueError``.

- :func:`logme` — the log marginal evidence of a Bayesian linear model from the features to each one-hot label
  column, per example, averaged over classes (You et al., 2021, "LogME: Practical Assessment of Pre-trained Models
  for Transfer Learning"). The prior precision α and noise precision β are maximised by the paper's fixed-point
  updates, run for all columns at once on the eigendecomposition of the smaller Gram matrix (FᵀF or FFᵀ). Unlike
  the reference implementation, log|A| keeps the ``(D − r)·log α`` term of the D − r zero eigenvalues when the
  feature matrix has rank r < D (fewer examples than dimensions): dropping it rewards wide features for nothing;
  and the evidence is maximised up to its two boundaries, α → ∞ (the features explain nothing) and β → ∞ (they
  span all N dimensions and fit y exactly), each with its closed form.
- :func:`hscore_shrinkage` — the H-score (Bao et al., 2019), tr(Σ⁻¹ Σ_between), with the feature covariance Σ
  estimated by Ledoit–Wolf shrinkage (Ibrahim et al., 2022), which keeps it stable when N is not much above D.
- :func:`knn_loo_accuracy` — leave-one-out accuracy of a k-nearest-neighbour vote under cosine similarity.
- :func:`sfda` — SFDA (Shao et al., 2022, "Not All Models Are Equal: Predicting Model Transferability in a
  Self-challenging Fisher Space"): the mean probability of the true class under a regularised Fisher discriminant,
  refitted after the examples it was unsure of are moved towards the other classes. It matches the authors'
  implementation; its docstring lists where it departs from their code and their paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOGME_MAX_ITERATIONS = 1000
LOGME_TOLERANCE = 1e-6
# A precision this many times the other's scale leaves no room: α > · β·σ_max is the α → ∞ limit (the weights pinned
# at zero), β·σ_min > · α the β → ∞ limit (no noise).
SWITCHED_OFF = 1e12


@dataclass(frozen=True)
class LogMEFit:
    """LogME for one target column: the evidence per example and the precisions that maximise it."""

    evidence: float
    alpha: float
    beta: float
    iterations: int
    converged: bool


def _spectrum(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(σ, Z, outside): the non-zero eigenvalues σ (r,) of FᵀF, F's squared singular values; the targets'
    coordinates Z = UᵀY (r × K) along F's left singular vectors U that go with them; and |Y − UZ|² of each column,
    the part of it that no linear map of the features reaches.

    All come from the eigendecomposition of the smaller Gram matrix, a fraction of the cost of an SVD of F:
    FFᵀ = U diag(σ) Uᵀ when N ≤ D; FᵀF = V diag(σ) Vᵀ otherwise, with U = F V diag(σ)^-½. The Gram matrix knows its
    eigenvalues to about ε·σ_max, so those under max(N, D)·ε·σ_max count as zero: such a direction's β·σ is
    nothing beside α, and the ``(D − r)·log α`` term and the residual account for it as they would for a zero.
    The part outside is measured, not taken as |Y|² − |Z|², and is exactly zero when the features span all N
    dimensions: there that difference would be rounding noise, and 1/noise is where the noise precision β stopped.
    """
    n, d = features.shape
    gram = features @ features.T if n <= d else features.T @ features
    sigma, vectors = np.linalg.eigh(gram)
    keep = sigma > sigma.max(initial=0.0) * max(n, d) * np.finfo(np.float64).eps
    sigma, vectors = sigma[keep], vectors[:, keep]
    if n <= d:
        z = vectors.T @ targets
        reached = vectors @ z
    else:
        scale = np.sqrt(sigma)[:, None]
        z = (vectors.T @ (features.T @ targets)) / scale
        reached = features @ (vectors @ (z / scale))
    outside = np.zeros(targets.shape[1]) if sigma.size == n else np.sum((targets - reached) ** 2, axis=0)
    return sigma, z, outside


def logme_fits(features: np.ndarray, targets: np.ndarray) -> list[LogMEFit]:
    """LogME of each real-valued column of ``targets`` (N × K; for a class, its one-hot indicator).

    The fixed-point updates of α and β run for all columns at once; each column stops on its own, as it would
    alone: converged, or at one of the two boundaries where the evidence is largest with a precision at infinity.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    n, d = f.shape
    sigma, z, outside = _spectrum(f, y)
    squared = z.T ** 2                                        # K × r: each target in the basis of F's column space
    rank, columns = sigma.size, y.shape[1]
    sums = np.stack([np.ones(rank), sigma], axis=1)           # r × 2: Σ x and Σ σ·x in one product

    def moments(alpha: np.ndarray, beta: np.ndarray, squared: np.ndarray, outside: np.ndarray):
        """N − γ with γ = Σ βσ/(α + βσ) the effective number of weights, |m|² and |y − F m|² of each column,
        written in the ratio t = α/β."""
        ratio = alpha / beta
        shrink = 1 / (ratio[:, None] + sigma)                 # 1/(t + σ) = β/(α + βσ)
        plain, by_sigma = ((shrink * shrink * squared) @ sums).T
        # N − γ summed as (N − r) + Σ t/(t + σ), not subtracted: as β grows, γ nears N and N − γ would be
        # rounding noise, zero or negative, where the noise precision (N − γ)/|y − F m|² needs it exact.
        return (n - rank) + ratio * shrink.sum(axis=1), by_sigma, ratio ** 2 * plain + outside

    alpha, beta = np.ones(columns), np.ones(columns)
    iterations = np.zeros(columns, dtype=int)
    converged = np.zeros(columns, dtype=bool)
    # α → ∞: the prior pins the weights at zero, because the features explain nothing the noise does not (or
    # there are none to speak of): once α outgrows β·σ_max, the limit's closed form is the answer.
    switched_off = np.full(columns, rank == 0) | ~squared.any(axis=1)
    # β → ∞: when the features span all N dimensions they fit y exactly, and the evidence may be largest with no
    # noise at all: once β·σ_min outgrows α, the limit's closed form is the answer.
    noise_free = np.zeros(columns, dtype=bool)
    sigma_max, sigma_min = sigma.max(initial=0.0), sigma.min(initial=math.inf)
    # The columns still iterating, and their state; a column that stops leaves these arrays.
    active = np.flatnonzero(~switched_off)
    a, b, sq, out = alpha[active], beta[active], squared[active], outside[active]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):   # what overflows stops its column
        for iteration in range(1, LOGME_MAX_ITERATIONS + 1):
            if active.size == 0:
                break
            spare, m_sq, residual = moments(a, b, sq, out)
            new_a = (n - spare) / np.maximum(m_sq, 1e-300)
            new_b = spare / np.maximum(residual, 1e-300)
            off = new_a > SWITCHED_OFF * new_b * sigma_max
            exact = ~off & (rank == n) & (new_b * sigma_min > SWITCHED_OFF * new_a)
            # Anything else that leaves (0, ∞) stops the column at its last finite step.
            step = ~off & ~exact & (0 < new_a) & (new_a < math.inf) & (0 < new_b) & (new_b < math.inf)
            done = step & (np.abs(new_a / a - 1) + np.abs(new_b / b - 1) < LOGME_TOLERANCE)
            a, b = np.where(step, new_a, a), np.where(step, new_b, b)
            stop = ~step | done
            if stop.any():
                alpha[active], beta[active] = a, b
                iterations[active[stop]] = iteration
                switched_off[active[off]] = noise_free[active[exact]] = converged[active[done]] = True
                going = ~stop
                active, a, b, sq, out = active[going], a[going], b[going], sq[going], out[going]
    alpha[active], beta[active] = a, b
    iterations[active] = LOGME_MAX_ITERATIONS
    spare, m_sq, residual = moments(alpha, beta, squared, outside)
    log_det_a = np.log(alpha[:, None] + beta[:, None] * sigma).sum(axis=1) + (d - rank) * np.log(alpha)
    evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * math.log(2 * math.pi)
                - beta / 2 * residual - alpha / 2 * m_sq - log_det_a / 2) / n
    fits = []
    for k in range(columns):
        if switched_off[k]:
            fits.append(_features_switched_off(y[:, k], int(iterations[k])))
        elif noise_free[k]:
            fits.append(_noise_free(sigma, squared[k], int(iterations[k])))
        else:
            fits.append(LogMEFit(float(evidence[k]), float(alpha[k]), float(beta[k]), int(iterations[k]),
                                 bool(converged[k])))
    return fits


def logme_target(features: np.ndarray, target: np.ndarray) -> LogMEFit:
    """LogME of one real-valued target column (for a class: its one-hot indicator)."""
    return logme_fits(features, np.asarray(target, dtype=np.float64)[:, None])[0]


def _features_switched_off(y: np.ndarray, iterations: int) -> LogMEFit:
    """The evidence in the limit α → ∞: the α terms cancel and y is noise with precision β = N / |y|²."""
    n = y.size
    beta = n / max(float(y @ y), 1e-300)
    evidence = n / 2 * math.log(beta) - n / 2 * math.log(2 * math.pi) - n / 2
    return LogMEFit(evidence / n, math.inf, beta, iterations, True)


def _noise_free(sigma: np.ndarray, squared: np.ndarray, iterations: int) -> LogMEFit:
    """The evidence in the limit β → ∞ when F's N singular values σ are all non-zero: y ~ N(0, FFᵀ/α), whose
    evidence is largest at α = N / Σ z²/σ."""
    n = sigma.size
    alpha = n / float(np.sum(squared / sigma))
    evidence = -(n * math.log(2 * math.pi) + float(np.sum(np.log(sigma))) - n * math.log(alpha) + n) / 2
    return LogMEFit(evidence / n, alpha, math.inf, iterations, True)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of integer class ``labels`` (N,), or of a multi-label 0/1 matrix (N × K): the mean over columns."""
    labels = np.asarray(labels)
    targets = labels if labels.ndim == 2 else (labels[:, None] == np.unique(labels)[None, :])
    # A column that is constant over the sample (a label no example has, or every example) carries no evidence.
    counts = targets.sum(axis=0)
    targets = targets[:, (counts > 0) & (counts < len(targets))]
    if targets.shape[1] == 0:
        return float("nan")
    return float(np.mean([fit.evidence for fit in logme_fits(features, targets)]))


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


SFDA_SHRINKAGE_RATE = 5.0        # a in λ = exp(−a·σ_max(S_w))
SFDA_MIN_SHRINKAGE = 1e-10
SFDA_POWER_STEPS = 3             # power-iteration steps (each two products) for σ_max(S_w)


def sfda(features: np.ndarray, labels: np.ndarray) -> float:
    """SFDA: the mean probability of the true class under a regularised Fisher discriminant, refitted after each
    example is pulled towards the other classes as far as the first fit was unsure of it (Shao et al., 2022,
    "Not All Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher Space").

    1. The within-class scatter S_w = Σ_c π_c Cov(x | c) is shrunk towards μI (μ its mean variance) with
       λ = max(exp(−5·σ_max(S_w)), 1e-10), σ_max by three steps of power iteration.
    2. The Fisher space is spanned by the generalised eigenvectors V of (S_b, S_w,λ), normalised to Vᵀ S_w,λ V = I,
       and the classifier there is the Bayes rule for Gaussian classes with shared covariance:
       p(c | x) ∝ exp(xᵀVVᵀm_c − ½ m_cᵀVVᵀm_c + log π_c).
    3. Self-challenge (ConfMix): each example moves to p·x + (1 − p)·m̄_c, where m̄_c is the mean of the other
       classes' means and p its true class's softmax of the first fit's probabilities; the second fit, with the
       same λ, scores the mean p(true class | x) of the moved examples.

    The computation is the authors' reference implementation's (SFDA_Score in metrics.py of TencentARC/SFDA, with
    which the paper's figures were produced), including where its details go beyond the outline above: V holds all
    D eigenvectors, not just the C − 1 of a Fisher projection; the probabilities are softened by a second softmax
    before the mix; the score is the mean probability, not its log. It departs from that code only here:

    - With all D eigenvectors VVᵀ = S_w,λ⁻¹, so the classifier is one Cholesky solve instead of a generalised
      eigendecomposition, and S_b, which only orders the eigenvectors, is never formed. Both need S_w,λ positive
      definite: this raises ``np.linalg.LinAlgError`` where it is not (constant features, say).
    - Labels are renumbered 0..C − 1 first (the reference assumes they are), the input is not modified (the
      reference mixes it in place), and fewer than two classes give NaN (no other class to mix towards).
    - Where the power iteration meets S_w's null space (S_w = 0) its estimate is 0, not NaN.
    """
    from scipy.linalg import cho_factor, cho_solve

    x = np.asarray(features, dtype=np.float64)
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    if classes.size < 2:
        return float("nan")
    one_hot = np.eye(classes.size)[codes]                                          # N × C
    priors = one_hot.mean(axis=0)

    def fit(x: np.ndarray, shrinkage: float | None) -> tuple[np.ndarray, float]:
        """p(c | x) for every example and class under the discriminant fitted to (x, labels), and its λ."""
        means = (one_hot.T @ x) / one_hot.sum(axis=0)[:, None]                     # C × D
        within = x - means[codes]
        scatter = within.T @ within / len(x)                                      # Σ_c π_c Cov(x | c), biased
        if shrinkage is None:
            shrinkage = max(math.exp(-SFDA_SHRINKAGE_RATE * _power_iteration(scatter)), SFDA_MIN_SHRINKAGE)
        d = scatter.shape[0]
        shrunk = (1 - shrinkage) * scatter + shrinkage * np.trace(scatter) / d * np.eye(d)
        coef = cho_solve(cho_factor(shrunk), means.T)                              # S_w,λ⁻¹ m_c, D × C
        logits = x @ coef - 0.5 * np.einsum("cd,dc->c", means, coef) + np.log(priors)
        return _softmax(logits), shrinkage

    probabilities, shrinkage = fit(x, None)
    confidence = _softmax(probabilities)[np.arange(len(x)), codes][:, None]       # softened, as the reference
    means = (one_hot.T @ x) / one_hot.sum(axis=0)[:, None]
    others = (means.sum(axis=0) - means) / (classes.size - 1)                    # m̄_c: the other classes' mean
    mixed = confidence * x + (1 - confidence) * others[codes]
    probabilities, _ = fit(mixed, shrinkage)
    return float(np.mean(probabilities[np.arange(len(x)), codes]))


def _power_iteration(matrix: np.ndarray) -> float:
    """SFDA's estimate of a symmetric matrix A's largest eigenvalue: power iteration from its row sums, two
    products a step, then xᵀAy = |Ay| for the last pair."""
    x = matrix.sum(axis=1)
    for _ in range(SFDA_POWER_STEPS):
        y = matrix @ x
        if not np.any(y):
            return 0.0                       # x is in A's null space (A = 0 for constant features)
        y /= np.linalg.norm(y)
        x = matrix @ y
        x /= np.linalg.norm(x)
    return float(x @ matrix @ y)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


ESTIMATORS = {"logme": logme, "hscore": hscore_shrinkage, "knn": knn_loo_accuracy, "sfda": sfda}
ESTIMATOR_LABELS = {"logme": "LogME", "hscore": "H-score", "knn": "k-NN", "sfda": "SFDA"}
MULTI_LABEL_ESTIMATORS = ("logme",)     # defined for a 0/1 label matrix; the others need one label per example
