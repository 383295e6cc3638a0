"""`zoo recommend --data`: rank the data-free shortlist by measured transferability on a sample of the person's data.

1. Sample: up to ``sample`` labelled examples (train and validation together), stratified by class, in an order
   whose every prefix keeps the class shares (so a smaller stage's sample is the start of a larger one's).
2. Features: each shortlisted backbone's pooled features on the sample (timm: pre-logits; transformers: mean over
   tokens or frames, averaged over layers with ``layers="mean"``, the default), cached on disk in the same store
   and format as the linear strategy's features (:mod:`zoo.engine.features`). Backbones not reached within
   ``budget_s`` are reported as not scored; one that cannot be loaded (not fetched, say) is reported with its
   cause, and the next data-free candidate that can be scored takes its place in the shortlist.
3. Successive halving: with more than ``HALVING_KEEP`` candidates, all are scored on a quarter or half of the sample
   first and only the better half goes on to the next, larger stage (:func:`halving_stages`); the output says
   which were cut at which stage.
4. Estimators (:mod:`zoo.recommend.estimators`) score every backbone on the sample and on ``bootstrap`` random
   subsamples of 80% of it (without replacement: a duplicated example would be its own nearest neighbour).
5. Combination (:mod:`zoo.recommend.combine`): the estimators are pooled and weighed against the data-free quality
   by how noisy each is on this sample, how far they agree with each other, and how far the prior agrees with
   them; the subsamples give 5–95% intervals of each combined score and rank.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from zoo.data import load_data
from zoo.engine.features import cache_key, load_cached, save_cached
from zoo.errors import InvalidInputError, ZooError
from zoo.loading import load_classifier
from zoo.precision import autocast, resolve_precision
from zoo.recommend.combine import COMBINATION, SUBSAMPLE_FRACTION, Combination, Estimates, combine
from zoo.recommend.estimators import ESTIMATOR_LABELS, ESTIMATORS, MULTI_LABEL_ESTIMATORS
from zoo.recommend.prior import _ordinal, adapt_command, choose_strategy

HALVING_KEEP = 5          # successive halving stops once this many candidates or fewer remain
HALVING_MIN_SAMPLE = 50   # and never scores a stage on fewer examples than this


@dataclass
class ScoredCandidate:
    name: str
    family: str
    prior_rank: int
    prior_score: float
    prior_quality: float = 0.5                   # the data-free quality the combination weighs (0..1)
    status: str = "scored"                       # "scored", "cut" (successive halving), "time budget" or "failed"
    error: str | None = None                     # why it failed
    rank: int | None = None                      # in the combined ranking (cut ones after the finalists)
    combined: float | None = None
    interval: tuple[float, float] | None = None  # 5-95% of the combined score over subsamples
    rank_interval: tuple[int, int] | None = None
    prior_weight: float | None = None            # the prior's share of the combined score
    scores: dict[str, float] = field(default_factory=dict)
    stage: int | None = None                     # the last successive-halving stage it was scored at (1 = first)
    stage_sample: int | None = None              # examples at that stage
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
    prior_weight: float                          # the prior's mean share of the combined scores
    estimators: list[str]
    candidates: list[ScoredCandidate]            # combined ranking first, then the cut and the unscored
    agreement: dict[str, Any]
    strategy: str
    strategy_reason: str
    next_command: str
    budget_s: float
    elapsed_s: float
    data_free: Any                               # the Recommendation the shortlist came from
    combination: dict[str, Any] = field(default_factory=dict)   # the rule and the weights it gave
    stages: list[dict[str, Any]] = field(default_factory=list)  # successive halving: sample and backbones per stage
    estimates: Estimates | None = None           # the raw estimator scores on the sample and subsamples
    method: str = "data"

    @property
    def estimator_labels(self) -> dict[str, str]:
        return {name: ESTIMATOR_LABELS[name] for name in self.estimators}

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "method": self.method, "data": self.data, "sample": self.sample,
            "layers": self.layers, "prior_weight": self.prior_weight, "estimators": self.estimators,
            "combination": self.combination, "stages": self.stages,
            "candidates": [c.to_dict() for c in self.candidates],
            "rankings": {
                "data_free": [c.name for c in sorted(self.candidates, key=lambda c: c.prior_rank)],
                "combined": [c.name for c in self.candidates if c.rank is not None],
                **{name: [c.name for c in sorted((c for c in self.candidates if c.status == "scored"),
                                                 key=lambda c, name=name: _descending(c.scores[name]))]
                   for name in self.estimators},
            },
            "agreement": self.agreement, "strategy": self.strategy, "strategy_reason": self.strategy_reason,
            "next_command": self.next_command, "budget_s": self.budget_s, "elapsed_s": self.elapsed_s,
            "constraints": self.data_free.constraints.to_dict(), "data_free": self.data_free.to_dict(),
        }


# --- sample and features ----------------------------------------------------------------------------------------


def stratified_sample(examples: Sequence, size: int, *, seed: int) -> list:
    """Up to ``size`` examples, each class keeping its share (and at least 2 where it has them), ordered so that
    every prefix keeps the shares too: class by class, each example's place is its position within its class as a
    fraction of the class's count."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for index, example in enumerate(examples):
        by_class.setdefault(example.labels[0] if example.labels else -1, []).append(index)
    chosen: list[int] = []
    if len(examples) <= size:
        chosen = list(range(len(examples)))
    else:
        for indices in by_class.values():
            share = max(min(2, len(indices)), round(size * len(indices) / len(examples)))
            chosen += list(rng.choice(indices, size=min(share, len(indices)), replace=False))
        if len(chosen) > size:
            chosen = list(rng.choice(chosen, size=size, replace=False))
        elif len(chosen) < size:     # the shares rounded down: top up at random
            rest = sorted(set(range(len(examples))) - set(chosen))
            chosen += list(rng.choice(rest, size=size - len(chosen), replace=False))
    picked = set(chosen)
    keys = []
    for indices in by_class.values():
        mine = [i for i in indices if i in picked]
        rng.shuffle(mine)
        keys += [((k + 0.5) / len(mine), int(i)) for k, i in enumerate(mine)]
    return [examples[i] for _, i in sorted(keys)]


def halving_stages(candidates: int, sample: int) -> list[int]:
    """The sample size of each successive-halving stage: halve the sample while more than HALVING_KEEP candidates
    would reach the last stage, keeping the better half of the candidates from one stage to the next."""
    stages, remaining = [sample], candidates
    while remaining > HALVING_KEEP and stages[0] // 2 >= HALVING_MIN_SAMPLE:
        stages.insert(0, stages[0] // 2)
        remaining = math.ceil(remaining / 2)
    return stages


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


def estimate_all(features: dict[str, np.ndarray], labels: np.ndarray, *, estimators: Sequence[str], bootstrap: int,
                 seed: int) -> Estimates:
    """Every estimator's score of every backbone on the whole sample and on ``bootstrap`` subsamples.

    ``labels`` are class indices (N,), or a 0/1 matrix (N × K) for multi-label data.
    """
    names = list(features)

    def scores(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {est: np.array([estimate(est, features[name][rows], labels[rows]) for name in names])
                for est in estimators}

    whole = scores(np.arange(len(labels)))
    rng = np.random.default_rng(seed)
    size = max(2, int(round(SUBSAMPLE_FRACTION * len(labels))))
    subsamples = [scores(np.sort(rng.choice(len(labels), size=size, replace=False))) for _ in range(bootstrap)]
    draws = {est: np.stack([s[est] for s in subsamples]) if subsamples else np.zeros((0, len(names)))
             for est in estimators}
    return Estimates(names, len(labels), whole, draws)


def intervals(combination: Combination) -> tuple[list[tuple[float, float]], list[tuple[int, int] | None]]:
    """5-95% of each combined score, and of its rank, over the subsamples."""
    draws = combination.draws
    if not len(draws):
        return [(float(c), float(c)) for c in combination.combined], [None] * len(combination.combined)
    ranks = (-draws).argsort(axis=1).argsort(axis=1) + 1
    scores = [(float(np.percentile(draws[:, i], 5)), float(np.percentile(draws[:, i], 95)))
              for i in range(draws.shape[1])]
    places = [(int(np.percentile(ranks[:, i], 5)), int(math.ceil(np.percentile(ranks[:, i], 95))))
              for i in range(draws.shape[1])]
    return scores, places


def agreement(candidates: Sequence[ScoredCandidate], estimators: Sequence[str],
              combination: Combination | None = None) -> dict[str, Any]:
    """Kendall's τ between every pair of estimator rankings, between the data-free quality and the pooled data
    score, and between the data-free and combined rankings."""
    from scipy.stats import kendalltau

    scored = [c for c in candidates if c.status == "scored"]
    if len(scored) < 3:
        return {"pairs": {}, "mean": None, "prior_vs_data": None, "prior_vs_combined": None,
                "note": "fewer than 3 backbones scored: agreement is not measured"}

    def tau(first, second) -> float | None:
        value = kendalltau(first, second).statistic
        return None if math.isnan(value) else round(float(value), 3)

    pairs = {f"{first}~{second}": tau([c.scores[first] for c in scored], [c.scores[second] for c in scored])
             for i, first in enumerate(estimators) for second in estimators[i + 1:]}
    values = [v for v in pairs.values() if v is not None]
    prior_vs_data = None
    if combination is not None:
        prior_vs_data = tau(list(combination.prior), list(combination.data))
    return {"pairs": pairs, "mean": round(float(np.mean(values)), 3) if values else None,
            "prior_vs_data": prior_vs_data,
            "prior_vs_combined": tau([-c.prior_rank for c in scored], [c.combined for c in scored])}


# --- the whole recommendation -----------------------------------------------------------------------------------


def recommend_with_data(data_free, specs: dict[str, Any], families: dict[str, Any], *, data: str, task: str,
                        sample_size: int = 1000, shortlist: int = 5, budget_s: float = 600.0, layers: str = "mean",
                        bootstrap: int = 30, seed: int = 0, device: str = "auto", max_seconds: float = 10.0,
                        batch_size: int = 32, val_fraction: float = 0.1, halving: bool = True,
                        progress: Callable[[str, int, int], None] | None = None,
                        message: Callable[[str], None] | None = None) -> DataRecommendation:
    """Score the ``shortlist`` best of ``data_free``'s candidates (``0``: all of them, as named) on a sample of
    ``data``; see the module docstring for the method. A candidate that cannot be loaded is replaced by the next
    data-free one when a shortlist is scored."""
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
        estimators = [e for e in ESTIMATORS if e in MULTI_LABEL_ESTIMATORS]
    else:
        labels = np.array([example.labels[0] for example in sample])
        estimators = list(ESTIMATORS)
    torch_device = _device(device)
    precision = resolve_precision("auto", torch_device)   # bf16 or fp16 on a GPU, as adapt's frozen passes
    extra = {"kind": "pooled", "layers": layers, "max_seconds": max_seconds, "precision": precision}

    queue = list(data_free.candidates)
    wanted = len(queue) if shortlist <= 0 else min(shortlist, len(queue))
    active, queue = queue[:wanted], queue[wanted:]
    entries: dict[str, ScoredCandidate] = {}
    features: dict[str, np.ndarray] = {}        # each backbone's features of the sample's first rows so far
    stages = halving_stages(wanted, len(sample)) if halving else [len(sample)]
    stage_log: list[dict[str, Any]] = []
    combination, estimates, final = None, None, []

    def extract(entry: ScoredCandidate, rows: list, fingerprint: str) -> np.ndarray | None:
        """Features of ``rows`` (a prefix of the sample): from the cache, else those already extracted plus the
        rest; None when the budget runs out first. Raises ZooError when the backbone cannot be loaded."""
        spec = specs[entry.name]
        key = cache_key(spec, fingerprint=fingerprint, split="recommend-sample", extra=extra)
        cached = load_cached(key)
        if cached is not None:
            entry.cached = True
            say(f"{entry.name}: features from the cache")
            return cached[0].double().numpy()
        if time.monotonic() > deadline:
            return None
        have = features.get(entry.name)
        have = have[:len(rows)] if have is not None else np.zeros((0, 0))
        t0 = time.monotonic()
        classifier = load_classifier(spec, families[spec.family], task=task, labels=splits.label_names,
                                     multi_label=multi_label).classifier
        done = [len(have)]

        def on_batch(n: int) -> None:
            done[0] += n
            if progress:
                progress(entry.name, done[0], len(rows))

        rest = extract_features(classifier, rows[len(have):], layers=layers, max_seconds=max_seconds,
                                batch_size=batch_size, device=torch_device, deadline=deadline, precision=precision,
                                on_batch=on_batch)
        entry.seconds += time.monotonic() - t0
        if rest is None:
            return None
        pooled = np.concatenate([have, rest]) if len(have) else rest
        if not np.isfinite(pooled).all():
            raise ZooError("its features hold NaN or infinite values (broken weights, or inputs it cannot take)")
        import torch

        save_cached(key, torch.from_numpy(pooled).float(), torch.zeros(len(pooled)))
        return pooled

    for number, size in enumerate(stages, start=1):
        last = number == len(stages)
        rows = sample[:size]
        fingerprint = _sample_fingerprint(splits.fingerprint, rows)
        scored_here, pending = [], list(active)
        while pending:
            cand = pending.pop(0)
            entry = entries.get(cand.name)
            if entry is None:
                entry = entries[cand.name] = ScoredCandidate(
                    cand.name, cand.family, cand.rank, cand.score, prior_quality=cand.quality,
                    latency_ms=cand.latency_ms, params_m=cand.params_m)
            try:
                pooled = extract(entry, rows, fingerprint)
            except ZooError as exc:
                entry.status, entry.error = "failed", str(exc)
                active.remove(cand)
                replacement = queue.pop(0) if queue and shortlist > 0 and number == 1 else None
                say(f"{cand.name}: not scored: {exc}" + (f"; scoring {replacement.name} instead" if replacement
                                                          else ""))
                if replacement is not None:
                    active.append(replacement)
                    pending.append(replacement)
                continue
            if pooled is None:
                entry.status = "time budget"
                active.remove(cand)
                continue
            features[cand.name], entry.feature_dim = pooled, pooled.shape[1]
            entry.status, entry.stage, entry.stage_sample = "scored", number, size
            scored_here.append(entry)
        if not scored_here:
            break
        names = [e.name for e in scored_here]
        estimates = estimate_all({n: features[n][:size] for n in names}, labels[:size], estimators=estimators,
                                 bootstrap=bootstrap if last else min(bootstrap, 10), seed=seed + number)
        prior = np.array([e.prior_quality for e in scored_here])
        combination = combine(prior, estimates) if len(names) >= 2 else None
        for i, entry in enumerate(scored_here):
            entry.scores = {est: float(estimates.scores[est][i]) for est in estimators}
            entry.combined = float(combination.combined[i]) if combination is not None else 0.0
        ordered = sorted(scored_here, key=lambda e: -(e.combined or 0.0))
        kept = ordered if last else ordered[:math.ceil(len(ordered) / 2)]
        for entry in ordered[len(kept):]:
            entry.status = "cut"
            entry.reason = (f"cut at stage {number} of {len(stages)} ({size} examples): below the better half "
                            f"(combined #{ordered.index(entry) + 1} of {len(ordered)})")
        stage_log.append({"stage": number, "sample": size, "scored": names,
                          "cut": [e.name for e in ordered[len(kept):]]})
        if len(ordered) > len(kept):
            say(f"stage {number} of {len(stages)} ({size} examples): kept {', '.join(e.name for e in kept)}; "
                f"cut {', '.join(e.name for e in ordered[len(kept):])}")
        active = [next(c for c in data_free.candidates if c.name == e.name) for e in kept]
        final = kept if last else []
        if not last and len(kept) < 2:
            final = kept
            break

    if not final:
        raise ZooError(_nothing_scored(list(entries.values()), budget_s))
    if combination is not None and len(final) >= 2:
        scores, places = intervals(combination)
        for entry in final:
            i = estimates.names.index(entry.name)
            entry.interval, entry.rank_interval = scores[i], places[i]
            entry.prior_weight = round(float(combination.prior_weight[i]), 4)
    else:
        only = final[0]
        only.combined, only.interval, only.rank_interval = 0.0, (0.0, 0.0), (1, 1)
    # Successive halving ranks every backbone it scored: the finalists by their score, then those cut later
    # before those cut earlier, each by its stage's score.
    cut = sorted((e for e in entries.values() if e.status == "cut"), key=lambda e: (-(e.stage or 0),
                                                                                   -(e.combined or 0.0)))
    for rank, entry in enumerate(final + cut, start=1):
        entry.rank = rank
    unscored = [e for e in entries.values() if e.status in ("failed", "time budget")]

    num_examples = len(splits.train) + len(splits.val)
    strategy, strategy_reason = _strategy(final, num_examples, specs, data_free.constraints.device)
    for entry in final:
        entry.reason = _reason(entry, final, estimators)
        entry.next_command = adapt_command(entry.name, task, data, strategy, data_free.constraints.device,
                                           data_free.registry_files)
    summary = combination.summary() if combination is not None and len(final) >= 2 else {}
    return DataRecommendation(
        task=task, data=data,
        sample={"size": len(sample), "of": len(pool), "class_counts": counts,
                "fingerprint": _sample_fingerprint(splits.fingerprint, sample), "seed": seed,
                "multi_label": multi_label, "precision": precision},
        layers=layers, prior_weight=summary.get("prior_weight", 0.0), estimators=estimators,
        candidates=final + cut + unscored, agreement=agreement(final, estimators, combination),
        strategy=strategy, strategy_reason=strategy_reason, next_command=final[0].next_command, budget_s=budget_s,
        elapsed_s=round(time.monotonic() - started, 2),
        data_free=replace(data_free, candidates=[c for c in data_free.candidates if c.name in entries]),
        combination={"rule": COMBINATION.label(), **summary}, stages=stage_log, estimates=estimates)


def _nothing_scored(entries: Sequence[ScoredCandidate], budget_s: float) -> str:
    """Why no backbone could be scored, naming the real causes."""
    failed = [e for e in entries if e.status == "failed"]
    late = [e for e in entries if e.status == "time budget"]
    parts = []
    if failed:
        shown = "; ".join(f"{e.name}: {e.error}" for e in failed[:3]) + ("; ..." if len(failed) > 3 else "")
        parts.append(f"{len(failed)} could not be loaded ({shown})")
    if late:
        parts.append(f"{len(late)} were not reached within --budget-s {budget_s:g} (raise the budget or lower "
                     "--sample)")
    return "no backbone could be scored: " + "; ".join(parts or ["none was tried"])


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
    best = [ESTIMATOR_LABELS[est] for est, place in places.items() if place == 1]
    ranks = ", ".join(f"{ESTIMATOR_LABELS[est]} {_ordinal(place)}" for est, place in places.items())
    return f"{where}; {'best by ' + ' and '.join(best) if best else ranks}"
