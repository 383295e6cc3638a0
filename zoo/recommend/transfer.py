"""`zoo recommend --data`: rank the data-free shortlist by measured transferability on a sample of the person's data.

1. Sample: up to ``sample`` labelled examples (train and validation together), stratified by class.
2. Features: each shortlisted backbone's pooled features on the sample (timm: pre-logits; transformers: mean over
   tokens or frames, averaged over layers with ``layers="mean"``), cached on disk in the same store and format as
   the linear strategy's features (:mod:`zoo.engine.features`). Backbones not reached within ``budget_s`` are
   reported as not scored.
3. Estimators (:mod:`zoo.recommend.estimators`): LogME, H-score with Ledoit–Wolf shrinkage, k-NN leave-one-out
   accuracy (the last two need single-label data).
4. Combination: each estimator's scores are standardised across the scored backbones and averaged into a data
   score; the data-free score is standardised the same way; the combined score is
   ``w · prior + (1 − w) · data`` with ``w = PRIOR_PSEUDO_COUNT / (PRIOR_PSEUDO_COUNT + N)``: the more examples,
   the more the sample decides.
5. Uncertainty: the whole computation is repeated on ``bootstrap`` random subsamples of 80% of the sample
   (without replacement: a duplicated example would be its own nearest neighbour), giving 5–95% intervals of
   each combined score and rank.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from zoo.data import load_data
from zoo.engine.features import cache_key, load_cached, save_cached
from zoo.errors import InvalidInputError, ZooError
from zoo.loading import load_classifier
from zoo.precision import autocast, resolve_precision
from zoo.recommend.estimators import ESTIMATORS
from zoo.recommend.prior import _ordinal, adapt_command, choose_strategy

PRIOR_PSEUDO_COUNT = 200
SUBSAMPLE_FRACTION = 0.8
ESTIMATOR_SHORT = {"logme": "LogME", "hscore": "H-score", "knn": "k-NN"}


@dataclass
class ScoredCandidate:
    name: str
    family: str
    prior_rank: int
    prior_score: float
    status: str                                  # "scored", "time budget" (not reached) or "failed"
    error: str | None = None                     # why it failed
    rank: int | None = None                      # in the combined ranking
    combined: float | None = None
    interval: tuple[float, float] | None = None  # 5-95% of the combined score over subsamples
    rank_interval: tuple[int, int] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    feature_dim: int | None = None
    seconds: float = 0.0                         # feature extraction (0 when cached)
    cached: bool = False
    latency_ms: float = 0.0
    params_m: float = 0.0
    reason: str = ""
    next_command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DataRecommendation:
    task: str
    data: str
    sample: dict[str, Any]                       # size, per-class counts, fingerprint, seed
    layers: str
    prior_weight: float
    estimators: list[str]
    candidates: list[ScoredCandidate]            # combined ranking first, then the unscored
    agreement: dict[str, Any]
    strategy: str
    strategy_reason: str
    next_command: str
    budget_s: float
    elapsed_s: float
    data_free: Any                               # the Recommendation the shortlist came from
    method: str = "data"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "method": self.method, "data": self.data, "sample": self.sample,
            "layers": self.layers, "prior_weight": self.prior_weight, "estimators": self.estimators,
            "candidates": [c.to_dict() for c in self.candidates],
            "rankings": {
                "data_free": [c.name for c in sorted(self.candidates, key=lambda c: c.prior_rank)],
                "combined": [c.name for c in self.candidates if c.rank is not None],
                **{name: [c.name for c in sorted((c for c in self.candidates if name in c.scores),
                                                 key=lambda c, name=name: _descending(c.scores[name]))]
                   for name in self.estimators},
            },
            "agreement": self.agreement, "strategy": self.strategy, "strategy_reason": self.strategy_reason,
            "next_command": self.next_command, "budget_s": self.budget_s, "elapsed_s": self.elapsed_s,
            "constraints": self.data_free.constraints.to_dict(), "data_free": self.data_free.to_dict(),
        }


# --- sample and features ----------------------------------------------------------------------------------------


def stratified_sample(examples: Sequence, size: int, *, seed: int) -> list:
    """Up to ``size`` examples, each class keeping its share (and at least 2 where it has them)."""
    if len(examples) <= size:
        return list(examples)
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for index, example in enumerate(examples):
        by_class.setdefault(example.labels[0] if example.labels else -1, []).append(index)
    chosen: list[int] = []
    for indices in by_class.values():
        share = max(min(2, len(indices)), round(size * len(indices) / len(examples)))
        chosen += list(rng.choice(indices, size=min(share, len(indices)), replace=False))
    chosen = sorted(rng.choice(chosen, size=min(size, len(chosen)), replace=False)) if len(chosen) > size \
        else sorted(chosen)
    return [examples[i] for i in chosen]


def _sample_fingerprint(data_fingerprint: str, sample: Sequence) -> str:
    digest = hashlib.sha256(data_fingerprint.encode())
    for example in sample:
        digest.update(example.id.encode())
    return digest.hexdigest()


def extract_features(classifier, examples: Sequence, *, layers: str, max_seconds: float, batch_size: int,
                     device, deadline: float | None, precision: str = "fp32",
                     on_batch: Callable[[int], None] | None = None) -> np.ndarray | None:
    """Pooled features of ``examples`` as a float64 array, or None when ``deadline`` passes first; the frozen
    backbone runs in ``precision`` (resolved, :mod:`zoo.precision`)."""
    from zoo.engine.batches import ExampleDataset, collect_outputs, make_collate

    dataset = ExampleDataset(examples, classifier, train=False, max_seconds=max_seconds,
                             num_labels=len(classifier.labels), multi_label=classifier.multi_label)
    # Averaging over layers is a family option (Classifier.feature_layers); others pool their one representation.
    takes_layers = layers != "last" and layers in classifier.feature_layers

    def pooled(batch):
        return classifier.features(batch, layers=layers) if takes_layers else classifier.features(batch)

    classifier.model.to(device).eval()
    collected = collect_outputs(pooled, dataset, collate=make_collate(classifier, classifier.multi_label),
                                batch_size=batch_size, device=device, on_batch=on_batch,
                                autocast=autocast(precision, device),
                                should_stop=None if deadline is None else lambda: time.monotonic() > deadline)
    return None if collected is None else collected[1].astype(np.float64)


# --- scoring ----------------------------------------------------------------------------------------------------


def _standardise(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def combine_scores(prior: np.ndarray, estimates: dict[str, np.ndarray], prior_weight: float) -> np.ndarray:
    """The combined score of each backbone: its standardised prior score and the mean of its standardised
    estimator scores, weighted ``prior_weight`` and ``1 - prior_weight``."""
    data = np.mean([_standardise(np.asarray(values, dtype=float)) for values in estimates.values()], axis=0)
    return prior_weight * _standardise(np.asarray(prior, dtype=float)) + (1 - prior_weight) * data


def estimate(estimator: str, features: np.ndarray, labels: np.ndarray) -> float:
    """One estimator's score, or NaN where it is undefined on these features (degenerate, e.g. constant, so a
    decomposition does not converge or a covariance is singular)."""
    try:
        with np.errstate(all="ignore"):
            value = float(ESTIMATORS[estimator](features, labels))
    except (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _descending(score: float | None) -> float:
    """Sort key: higher scores first, undefined ones last."""
    return -score if score is not None and math.isfinite(score) else math.inf


def _worst_where_undefined(values: np.ndarray) -> np.ndarray:
    """For ranking only: undefined scores (NaN, reported as such) go below every defined one."""
    defined = values[np.isfinite(values)]
    if defined.size == 0:
        return np.zeros_like(values)
    spread = float(defined.std()) or 1.0
    return np.where(np.isfinite(values), values, float(defined.min()) - spread)


def score_candidates(features: dict[str, np.ndarray], labels: np.ndarray, prior: dict[str, float], *,
                     estimators: Sequence[str], prior_weight: float, bootstrap: int, seed: int) -> dict[str, Any]:
    """Estimator scores on the whole sample, the combined score, and subsample intervals, per backbone.

    ``labels`` are class indices (N,), or a 0/1 matrix (N × K) for multi-label data (LogME only).
    """
    names = list(features)
    prior_scores = np.array([prior[name] for name in names])

    def combine(rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raw = {est: np.array([estimate(est, features[name][rows], labels[rows]) for name in names])
               for est in estimators}
        ranked = {est: _worst_where_undefined(values) for est, values in raw.items()}
        return combine_scores(prior_scores, ranked, prior_weight), raw

    everything = np.arange(len(labels))
    combined, raw = combine(everything)
    rng = np.random.default_rng(seed)
    draws, ranks = [], []
    size = max(2, int(round(SUBSAMPLE_FRACTION * len(labels))))
    for _ in range(bootstrap):
        rows = np.sort(rng.choice(len(labels), size=size, replace=False))
        scores, _ = combine(rows)
        draws.append(scores)
        ranks.append((-scores).argsort().argsort() + 1)
    out = {}
    for i, name in enumerate(names):
        interval = (float(np.percentile([d[i] for d in draws], 5)), float(np.percentile([d[i] for d in draws], 95))) \
            if draws else (float(combined[i]), float(combined[i]))
        rank_interval = (int(np.percentile([r[i] for r in ranks], 5)), int(math.ceil(np.percentile(
            [r[i] for r in ranks], 95)))) if ranks else None
        out[name] = {"combined": float(combined[i]), "interval": interval, "rank_interval": rank_interval,
                     "scores": {est: float(raw[est][i]) for est in estimators}}
    return out


def agreement(candidates: Sequence[ScoredCandidate], estimators: Sequence[str]) -> dict[str, Any]:
    """Kendall's τ between every pair of estimator rankings, and between the data-free and combined rankings."""
    from scipy.stats import kendalltau

    scored = [c for c in candidates if c.status == "scored"]
    if len(scored) < 3:
        return {"pairs": {}, "mean": None, "prior_vs_combined": None,
                "note": "fewer than 3 backbones scored: agreement is not measured"}
    pairs = {}
    for i, first in enumerate(estimators):
        for second in estimators[i + 1:]:
            tau = kendalltau([c.scores[first] for c in scored], [c.scores[second] for c in scored]).statistic
            pairs[f"{first}~{second}"] = None if math.isnan(tau) else round(float(tau), 3)
    prior_tau = kendalltau([-c.prior_rank for c in scored], [c.combined for c in scored]).statistic
    values = [v for v in pairs.values() if v is not None]
    return {"pairs": pairs, "mean": round(float(np.mean(values)), 3) if values else None,
            "prior_vs_combined": None if math.isnan(prior_tau) else round(float(prior_tau), 3)}


# --- the whole recommendation -----------------------------------------------------------------------------------


def recommend_with_data(data_free, specs: dict[str, Any], families: dict[str, Any], *, data: str, task: str,
                        sample_size: int = 1000, shortlist: int = 5, budget_s: float = 600.0, layers: str = "mean",
                        bootstrap: int = 30, seed: int = 0, device: str = "auto", max_seconds: float = 10.0,
                        batch_size: int = 32, val_fraction: float = 0.1,
                        progress: Callable[[str, int, int], None] | None = None,
                        message: Callable[[str], None] | None = None) -> DataRecommendation:
    """Score the data-free shortlist on a sample of ``data``; see the module docstring for the method."""
    started = time.monotonic()
    deadline = started + budget_s
    say = message or (lambda text: None)
    if sample_size < 10:
        raise InvalidInputError(f"--sample {sample_size}: at least 10 examples are needed to score backbones")
    if layers not in ("last", "mean"):
        raise InvalidInputError(f"--layers {layers!r}: use 'last' or 'mean'")
    splits = load_data(data, task=task, val_fraction=val_fraction, seed=seed)
    pool = [*splits.train, *splits.val]
    sample = stratified_sample(pool, sample_size, seed=seed)
    counts = {name: sum(1 for ex in sample if i in ex.labels) for i, name in enumerate(splits.label_names)}
    if len([n for n in counts.values() if n > 0]) < 2:
        raise InvalidInputError(f"{data}: the sample holds fewer than 2 classes; transferability needs at least 2")
    multi_label = splits.multi_label
    if multi_label:
        labels = np.zeros((len(sample), len(splits.label_names)))
        for row, example in enumerate(sample):
            labels[row, list(example.labels)] = 1
        estimators = ["logme"]     # H-score and k-NN voting are defined for one label per example
    else:
        labels = np.array([example.labels[0] for example in sample])
        estimators = list(ESTIMATORS)
    fingerprint = _sample_fingerprint(splits.fingerprint, sample)
    torch_device = _device(device)
    precision = resolve_precision("auto", torch_device)   # bf16 or fp16 on a GPU, as adapt's frozen passes

    shortlisted = data_free.candidates if shortlist <= 0 else data_free.candidates[:shortlist]
    candidates, features = [], {}
    for cand in shortlisted:
        spec = specs[cand.name]
        entry = ScoredCandidate(cand.name, cand.family, cand.rank, cand.score, status="scored",
                                latency_ms=cand.latency_ms, params_m=cand.params_m)
        candidates.append(entry)
        key = cache_key(spec, fingerprint=fingerprint, split="recommend-sample",
                        extra={"kind": "pooled", "layers": layers, "max_seconds": max_seconds,
                               "precision": precision})
        cached = load_cached(key)
        if cached is not None:
            features[cand.name], entry.cached = cached[0].double().numpy(), True
            entry.feature_dim = features[cand.name].shape[1]
            say(f"{cand.name}: features from the cache")
            continue
        if time.monotonic() > deadline:
            entry.status = "time budget"
            continue
        t0 = time.monotonic()
        try:
            classifier = load_classifier(spec, families[spec.family], task=task, labels=splits.label_names,
                                         multi_label=multi_label).classifier
            done = [0]

            def on_batch(n: int, name: str = cand.name, done: list[int] = done) -> None:
                done[0] += n
                if progress:
                    progress(name, done[0], len(sample))

            pooled = extract_features(classifier, sample, layers=layers, max_seconds=max_seconds,
                                      batch_size=batch_size, device=torch_device, deadline=deadline,
                                      precision=precision, on_batch=on_batch)
        except ZooError as exc:
            if len(shortlisted) == 1:
                raise
            entry.status, entry.error = "failed", str(exc)
            say(f"{cand.name}: not scored: {exc}")
            continue
        entry.seconds = time.monotonic() - t0
        if pooled is None:
            entry.status = "time budget"
            continue
        if not np.isfinite(pooled).all():
            entry.status = "failed"
            entry.error = "its features hold NaN or infinite values (broken weights, or inputs it cannot take)"
            say(f"{cand.name}: not scored: {entry.error}")
            continue
        import torch

        save_cached(key, torch.from_numpy(pooled).float(), torch.zeros(len(pooled)))
        features[cand.name], entry.feature_dim = pooled, pooled.shape[1]

    prior_weight = PRIOR_PSEUDO_COUNT / (PRIOR_PSEUDO_COUNT + len(sample))
    if len(features) >= 2:
        results = score_candidates(features, labels, {c.name: c.prior_score for c in candidates if c.name in features},
                                   estimators=estimators, prior_weight=prior_weight, bootstrap=bootstrap, seed=seed)
    elif len(features) == 1:
        only = next(iter(features))
        results = {only: {"combined": 0.0, "interval": (0.0, 0.0), "rank_interval": (1, 1),
                          "scores": {est: estimate(est, features[only], labels) for est in estimators}}}
    else:
        raise ZooError(f"no backbone could be scored within --budget-s {budget_s:g}: raise the budget, lower "
                       "--sample, or fetch the backbones first")
    for entry in candidates:
        if entry.name in results:
            result = results[entry.name]
            entry.combined, entry.interval = result["combined"], result["interval"]
            entry.rank_interval, entry.scores = result["rank_interval"], result["scores"]
    scored = sorted((c for c in candidates if c.name in results), key=lambda c: -(c.combined or 0.0))
    for rank, entry in enumerate(scored, start=1):
        entry.rank = rank
    unscored = [c for c in candidates if c.name not in results]

    num_examples = len(splits.train) + len(splits.val)
    strategy, strategy_reason = _strategy(scored, num_examples, specs, data_free.constraints.device)
    for entry in scored:
        entry.reason = _reason(entry, scored, estimators)
        entry.next_command = adapt_command(entry.name, task, data, strategy, data_free.constraints.device,
                                           data_free.registry_files)
    top = scored[0]
    return DataRecommendation(
        task=task, data=data,
        sample={"size": len(sample), "of": len(pool), "class_counts": counts, "fingerprint": fingerprint,
                "seed": seed, "multi_label": multi_label, "precision": precision},
        layers=layers, prior_weight=round(prior_weight, 4), estimators=estimators,
        candidates=scored + unscored, agreement=agreement(scored, estimators), strategy=strategy,
        strategy_reason=strategy_reason, next_command=top.next_command, budget_s=budget_s,
        elapsed_s=round(time.monotonic() - started, 2), data_free=data_free)


def _device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _strategy(scored: Sequence[ScoredCandidate], num_examples: int, specs, device: str) -> tuple[str, str]:
    """The adapt strategy for the top backbone: the data-size rule, then what the sample says."""
    top = scored[0]
    strategy, reason = choose_strategy(num_examples, specs[top.name].params_m, device)
    knn = top.scores.get("knn")
    if knn is not None and knn >= 0.9 and strategy != "linear":
        strategy = "linear"
        reason = (f"the frozen features already separate the classes (k-NN leave-one-out accuracy {knn:.2f} on the "
                  "sample): a linear probe is likely enough, and fast")
    if len(scored) > 1 and scored[1].interval and top.interval and scored[1].interval[1] >= top.interval[0]:
        reason += f"; {scored[1].name} is within the uncertainty of {top.name}, so adapting both is worth it"
    return strategy, reason


def _reason(entry: ScoredCandidate, scored: Sequence[ScoredCandidate], estimators: Sequence[str]) -> str:
    """Where the sample moved it, and which estimators put it where.

    Backbones tied without data share a data-free rank and hold the places from it on (three tied for #2 hold
    #2–#4, counted among the scored), so a move within those places is no move: the sample only broke the tie.
    """
    places = {est: sorted(scored, key=lambda c: _descending(c.scores[est])).index(entry) + 1 for est in estimators}
    rank = entry.rank or entry.prior_rank
    first = entry.prior_rank
    last = first + sum(1 for c in scored if c.prior_rank == first) - 1
    if first == last:
        moved = first - rank
        where = "same place as without data" if moved == 0 else \
            f"{'up' if moved > 0 else 'down'} {abs(moved)} from data-free #{first}"
    elif rank < first:
        where = f"up {first - rank} from data-free tied #{first}–#{last}"
    elif rank > last:
        where = f"down {rank - last} from data-free tied #{first}–#{last}"
    else:
        where = f"data-free tied #{first}–#{last}, now #{rank}"
    best = [ESTIMATOR_SHORT[est] for est, place in places.items() if place == 1]
    ranks = ", ".join(f"{ESTIMATOR_SHORT[est]} {_ordinal(place)}" for est, place in places.items())
    return f"{where}; {'best by ' + ' and '.join(best) if best else ranks}"
