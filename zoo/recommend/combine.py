"""How `zoo recommend --data` weighs its evidence: the estimators against each other, and the data against the prior.

Every source of evidence says how good each backbone is on a scale of its own, so each is first standardised across
the scored backbones (mean 0, spread 1). What each then counts for follows from how noisy it is, measured on the
sample at hand, the way a meta-analysis pools studies:

1. **Noise of an estimator.** The sample is subsampled ``B`` times (80%, without replacement) and every estimator
   rescored. A statistic's spread over subsamples of m of N examples is (N − m)/m of its sampling variance on all
   N, so each estimator's noise variance for each backbone is ``m/(N − m) = 4`` times its subsample variance. It
   shrinks as the sample grows: this is how sample size enters.
2. **The data score** of a backbone pools the standardised estimator scores by random-effects weights (DerSimonian
   and Laird, 1986): ``1 / (noise + τ²)``, where τ² is how far the estimators disagree beyond their own noise. When
   they agree, the steadier ones count more; when they disagree, τ² dominates and they count about equally, so no
   single estimator's steadiness buys it the say. The pooled score's variance is ``1 / Σ weights``.
3. **The prior** is the data-free quality (published numbers, :mod:`zoo.recommend.prior`), standardised by
   ``max(spread, PRIOR_RESOLUTION)``: quality differences smaller than that are not evidence, so near-ties in the
   prior become near-zero votes instead of ±1.
4. **The prior's noise** is estimated from how far it sits from the data: the mean squared difference between the
   standardised prior and the data score, less the data's own noise, and never below ``rule.prior_floor``. A
   prior that disagrees with precise, consistent data is found noisy and counts little; one that agrees counts
   more (and then changes little).
5. **The combined score** of each backbone is the precision-weighted mean of its prior and data scores: the prior's
   weight is ``data variance / (data variance + prior variance)``.

The free choices (``prior_floor``, which estimators are pooled, and whether by random effects or equally) are made by
``benchmarks/recommend_eval.py`` on surrogate zoos of images, text and audio, with each zoo in turn held out of the
choice; :data:`COMBINATION` is the rule chosen on all of them (docs/performance.md has the tables): LogME alone, with
the prior's noise floored at 1. Every estimator is still computed and shown; those the rule leaves out do not vote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SUBSAMPLE_FRACTION = 0.8
# Noise variance on the whole sample = this × the variance over subsamples of SUBSAMPLE_FRACTION of it.
SUBSAMPLE_INFLATION = SUBSAMPLE_FRACTION / (1 - SUBSAMPLE_FRACTION)
# Data-free quality is a blend of percentiles in 0..1: differences below a tenth are not evidence of anything.
PRIOR_RESOLUTION = 0.1
NOISE_FLOOR = 1e-6        # an estimator that does not move over subsamples is still not exact


@dataclass(frozen=True)
class CombinationRule:
    """The choices :func:`combine` leaves open: the least noise the prior is granted, and how estimators pool."""

    prior_floor: float                     # standardised units; math.inf leaves the prior out
    pooling: str = "random-effects"        # or "equal"
    estimators: tuple[str, ...] = ()       # those pooled (where scored); () pools every one scored

    def label(self) -> str:
        floor = "no prior" if math.isinf(self.prior_floor) else f"prior floor {self.prior_floor:g}"
        pooled = " + ".join(self.estimators) if self.estimators else "all estimators"
        return f"{pooled}, {floor}" + (f", {self.pooling} pooling" if len(self.estimators) != 1 else "")

    def pooled(self, scored: list[str]) -> list[str]:
        """The estimators this rule pools among those ``scored`` (all of them when it names none of them)."""
        chosen = [name for name in scored if name in self.estimators]
        return chosen or list(scored)


# Chosen by benchmarks/recommend_eval.py (leave-one-zoo-out over the image, text and audio zoos); see the module doc.
COMBINATION = CombinationRule(prior_floor=1.0, estimators=("logme",))


@dataclass
class Estimates:
    """Every estimator's score of every backbone, on the whole sample and on each subsample."""

    names: list[str]
    size: int                                            # examples in the sample
    scores: dict[str, np.ndarray]                        # estimator → (backbones,); NaN where undefined
    draws: dict[str, np.ndarray] = field(default_factory=dict)   # estimator → (subsamples, backbones)

    def to_dict(self) -> dict:
        return {"names": self.names, "size": self.size,
                "scores": {k: [_json_float(x) for x in v] for k, v in self.scores.items()},
                "draws": {k: [[_json_float(x) for x in row] for row in v] for k, v in self.draws.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Estimates:
        def array(values):
            return np.array([[np.nan if x is None else x for x in row] for row in values] if values and
                            isinstance(values[0], list) else [np.nan if x is None else x for x in values], dtype=float)

        count = len(data["names"])
        return cls(list(data["names"]), int(data["size"]), {k: array(v) for k, v in data["scores"].items()},
                   {k: array(v).reshape(len(v), count) for k, v in data["draws"].items()})


@dataclass
class Combination:
    combined: np.ndarray                 # (backbones,) the combined score, standardised units
    data: np.ndarray                     # the pooled data score
    data_variance: np.ndarray            # its noise variance
    prior: np.ndarray                    # the standardised prior
    prior_variance: float                # the prior's estimated noise variance
    prior_weight: np.ndarray             # (backbones,) the prior's share of each combined score
    estimator_weights: dict[str, float]  # each estimator's mean share of the data score
    heterogeneity: float                 # τ²: disagreement between estimators beyond their noise
    draws: np.ndarray                    # (subsamples, backbones) the combined score on each subsample

    def summary(self) -> dict:
        return {"prior_weight": round(float(self.prior_weight.mean()), 4),
                "prior_variance": _json_float(round(self.prior_variance, 4)),
                "estimator_weights": {k: round(v, 4) for k, v in self.estimator_weights.items()},
                "heterogeneity": round(self.heterogeneity, 4)}


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def standardise(values: np.ndarray, *, least_spread: float = 0.0) -> np.ndarray:
    """Mean 0 and spread 1 across backbones (all zero when they are all equal); the spread divided by is at least
    ``least_spread``, so differences below it stay small."""
    values = np.asarray(values, dtype=float)
    spread = max(float(values.std()), least_spread)
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def worst_where_undefined(values: np.ndarray) -> np.ndarray:
    """For ranking only: undefined scores (NaN, reported as such) go below every defined one."""
    values = np.asarray(values, dtype=float)
    defined = values[np.isfinite(values)]
    if defined.size == 0:
        return np.zeros_like(values)
    spread = float(defined.std()) or 1.0
    return np.where(np.isfinite(values), values, float(defined.min()) - spread)


def _standard(values: np.ndarray) -> np.ndarray:
    return standardise(worst_where_undefined(values))


def _heterogeneity(z: np.ndarray, noise: np.ndarray) -> float:
    """τ², the DerSimonian–Laird estimate of how far estimators (rows of ``z``, standardised scores of each
    backbone, with their ``noise`` variances) disagree beyond their noise, pooled over the backbones."""
    count, backbones = z.shape
    if count < 2:
        return 0.0
    fixed = 1 / noise
    pooled = (fixed * z).sum(0) / fixed.sum(0)
    q = float((fixed * (z - pooled) ** 2).sum())                                      # Cochran's Q
    c = float((fixed.sum(0) - (fixed ** 2).sum(0) / fixed.sum(0)).sum())
    return max(0.0, (q - backbones * (count - 1)) / c) if c > 0 else 0.0


def combine(prior_quality: np.ndarray, estimates: Estimates, rule: CombinationRule = COMBINATION) -> Combination:
    """Pool the estimators and weigh the pooled data score against the prior (see the module docstring)."""
    scored = list(estimates.scores)
    backbones = len(estimates.names)
    z_all = {e: _standard(estimates.scores[e]) for e in scored}
    draws_all = {e: np.stack([_standard(row) for row in estimates.draws[e]]) if e in estimates.draws and
                 len(estimates.draws[e]) else np.zeros((0, backbones)) for e in scored}
    subsamples = min(len(d) for d in draws_all.values())
    noise_all = {e: np.maximum(SUBSAMPLE_INFLATION * d.var(axis=0) if subsamples >= 2 else np.zeros(backbones),
                               NOISE_FLOOR) for e, d in draws_all.items()}

    names = rule.pooled(scored)
    count = len(names)
    z = np.stack([z_all[e] for e in names])                                            # E × M
    draws = [draws_all[e] for e in names]                                              # E × (B × M)
    noise = np.stack([noise_all[e] for e in names])                                    # E × M
    tau2 = _heterogeneity(z, noise)
    weights = 1 / (noise + tau2) if rule.pooling == "random-effects" else np.ones_like(z)
    share = weights / weights.sum(0)
    data = (share * z).sum(0)
    # The pooled score's variance under the random-effects model: each estimator is off the truth by its noise
    # plus τ²; a mean over several shares their errors out by its weights.
    data_variance = (share ** 2 * (noise + tau2)).sum(0)

    prior = standardise(prior_quality, least_spread=PRIOR_RESOLUTION)
    if math.isinf(rule.prior_floor):
        prior_variance, prior_weight = math.inf, np.zeros(backbones)
    else:
        prior_variance = max(float(np.mean((prior - data) ** 2) - np.mean(data_variance)), rule.prior_floor)
        prior_weight = data_variance / (data_variance + prior_variance)
    combined = prior_weight * prior + (1 - prior_weight) * data
    draw_data = sum(share[i] * draws[i][:subsamples] for i in range(count)) if subsamples else \
        np.zeros((0, backbones))
    combined_draws = prior_weight * prior + (1 - prior_weight) * draw_data
    return Combination(combined=combined, data=data, data_variance=data_variance, prior=prior,
                       prior_variance=prior_variance, prior_weight=prior_weight,
                       estimator_weights={e: float(share[i].mean()) for i, e in enumerate(names)},
                       heterogeneity=float(tau2), draws=combined_draws)
