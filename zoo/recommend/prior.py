"""The data-free ranking: filter by hard constraints, then score what is known without data.

score = (1 - w) · quality + w · speed + fit

- quality: each published reference number becomes a percentile among the task's backbones reporting the same
  benchmark, shrunk toward the middle when few report it; the percentiles are averaged with the benchmark's
  weight, and the result is blended with UNKNOWN_QUALITY in proportion to how little evidence there is
  (a backbone with no comparable number gets UNKNOWN_QUALITY);
- speed: where its estimated latency sits between the fastest and slowest candidate, on a log scale;
- w: 0.35 on CPU with no latency budget (speed matters), 0.2 otherwise (a budget already bounds it);
- fit: small penalties for very large models on very little data, for multilingual models when one language
  was asked for and a model dedicated to it is among the candidates, and for models of other languages than
  English only when no language was asked for;
- focus: when the scenario names a narrower job (keyword spotting, speaker identification, sound events...:
  Task.focuses), that job's benchmarks count FOCUS_WEIGHT in quality, and a backbone reporting one of them gets
  FOCUS_BONUS, so it ranks before every backbone that reports none (their numbers do not speak to the job).

A requested language adds the benchmarks published in that language (Task.language_metrics) to quality.
"""

from __future__ import annotations

import itertools
import math
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from zoo.engine.config import auto_candidates
from zoo.errors import NoCandidateError
from zoo.recommend.constraints import Constraints, ScenarioParse
from zoo.recommend.cost import DEVICE_PROFILES, CostEstimate, estimate_cost
from zoo.registry import BackboneSpec
from zoo.tasks import TASKS, get_task, lower_is_better

# Benchmarks that speak to transfer quality for each task, with how much each one counts: Task.prior_metrics by
# task name, for what shows a backbone's reference number (zoo list).
PRIOR_METRICS: dict[str, dict[str, float]] = {name: dict(task.prior_metrics) for name, task in TASKS.items()}
# Quality assumed for a backbone with no comparable published number: below the median, so documented backbones
# win ties against undocumented ones, but not so low that a fast unknown can never be shown.
UNKNOWN_QUALITY = 0.35
# Pseudo-count of the shrinkage toward the middle: a benchmark reported by n backbones counts n / (n + 2).
SHRINKAGE = 2.0
# What a scenario that names no language most likely means: zoo's examples and most catalogue text backbones are
# English, so a backbone for other languages only is marked down unless its language is asked for.
UNSTATED_LANGUAGE = "en"
# Added to the score of a backbone reporting a benchmark of the job the scenario names: more than the rest of a
# score can differ by (quality and speed blend to 0..1, fit takes off at most 0.3).
FOCUS_BONUS = 1.5


@dataclass
class Candidate:
    rank: int                           # 1, 2, 2, 4: equal scores share a rank (see rank_candidates)
    name: str
    family: str
    score: float
    quality: float                      # 0..1, from published numbers (UNKNOWN_QUALITY if none)
    speed: float                        # 0..1 among the candidates (1 = fastest)
    confidence: str                     # high | medium | low: how much published evidence backs `quality`
    params_m: float
    gflops: float
    latency_ms: float                   # estimate on the device (see Recommendation.device_profile)
    memory_gb: float                    # estimate
    license: str
    languages: list[str]
    evidence: list[dict[str, Any]]      # the reference numbers used, with their rank and source
    reason: str
    next_command: str
    tied_with: list[str] = field(default_factory=list)   # the others with the same shown score, so the same rank

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Recommendation:
    task: str
    constraints: Constraints
    scenario: ScenarioParse | None
    candidates: list[Candidate]
    excluded: list[dict[str, Any]] = field(default_factory=list)   # every backbone left out, and why
    nearest: list[dict[str, Any]] = field(default_factory=list)    # when none fit: the closest misses
    device_profile: dict[str, Any] = field(default_factory=dict)
    strategy: str = "auto"
    strategy_reason: str = ""
    method: str = "data-free"
    registry_files: list[str] = field(default_factory=list)   # --registry files: every suggested command repeats them

    @property
    def message(self) -> str:
        if self.candidates:
            return ""
        closest = self.nearest[0] if self.nearest else None
        hint = f" Closest: {closest['name']} ({closest['reason']})." if closest else ""
        return f"No {self.task} backbone meets every constraint.{hint} Relax a constraint, or add your own " \
               "backbone with --registry FILE."

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "method": self.method, "message": self.message,
            "constraints": self.constraints.to_dict(),
            "scenario": self.scenario.to_dict() if self.scenario else None,
            "device_profile": self.device_profile,
            "strategy": self.strategy, "strategy_reason": self.strategy_reason,
            "registry_files": self.registry_files,
            "candidates": [c.to_dict() for c in self.candidates],
            "nearest": self.nearest,
            "excluded": self.excluded,
        }


# --- filtering --------------------------------------------------------------------------------------------------


def _violations(spec: BackboneSpec, cost: CostEstimate, c: Constraints) -> list[tuple[str, float]]:
    """Each broken constraint with how far off it is (ratio over the limit; 10 for a categorical mismatch)."""
    broken = []
    if c.max_latency_ms is not None and cost.latency_ms > c.max_latency_ms:
        broken.append((f"est. {cost.latency_ms:.1f} ms on {c.device} > {c.max_latency_ms:g} ms",
                       cost.latency_ms / c.max_latency_ms))
    if c.max_params_m is not None and spec.params_m > c.max_params_m:
        broken.append((f"{spec.params_m:.1f}M params > {c.max_params_m:g}M", spec.params_m / c.max_params_m))
    if c.max_memory_gb is not None and cost.memory_gb > c.max_memory_gb:
        broken.append((f"est. {cost.memory_gb:.2f} GB > {c.max_memory_gb:g} GB", cost.memory_gb / c.max_memory_gb))
    if c.language and not _speaks(spec, c.language):
        broken.append((f"languages {', '.join(spec.languages)} do not include {c.language}", 10.0))
    if c.licenses and spec.license not in c.licenses:
        broken.append((f"licence {spec.license} not in {', '.join(c.licenses)}", 10.0))
    return broken


def _speaks(spec: BackboneSpec, language: str) -> bool:
    """Language-independent backbones (no languages listed) and multilingual ones speak every language."""
    if language == "multilingual":
        return "multilingual" in spec.languages
    return not spec.languages or language in spec.languages or "multilingual" in spec.languages


# --- scoring ----------------------------------------------------------------------------------------------------


@dataclass
class _Standing:
    percentile: float   # 0..1, 1 = best
    rank: int           # 1 = best
    count: int          # backbones reporting the benchmark


def _standings(pool: list[BackboneSpec], metric: str) -> dict[str, _Standing]:
    """Each backbone's standing among the pool's backbones reporting ``metric`` (ties share the mean)."""
    values = [(spec.name, spec.reference_value(metric)) for spec in pool]
    values = [(name, v) for name, v in values if v is not None]
    if len(values) < 2:
        return {}
    lower_better = lower_is_better(metric)
    ordered = sorted(values, key=lambda item: item[1] if lower_better else -item[1])   # best first
    n = len(ordered)
    result = {}
    for name, value in ordered:
        tied = [j for j, (_, v) in enumerate(ordered) if v == value]
        position = sum(tied) / len(tied)
        result[name] = _Standing(percentile=1 - position / (n - 1), rank=tied[0] + 1, count=n)
    return result


def _quality(spec: BackboneSpec, standings: dict[str, dict[str, _Standing]], weights: Mapping[str, float]):
    evidence, weighted, total_weight, strength = [], 0.0, 0.0, 0.0
    for metric, weight in weights.items():
        standing = standings.get(metric, {}).get(spec.name)
        if standing is None:
            continue
        reliability = standing.count / (standing.count + SHRINKAGE)
        shrunk = reliability * standing.percentile + (1 - reliability) * 0.5
        weighted += weight * shrunk
        total_weight += weight
        strength += weight * reliability
        ref = next(r for r in spec.reference if r.metric == metric)
        evidence.append({"metric": metric, "value": ref.value, "rank": standing.rank, "of": standing.count,
                         "source": ref.source})
    if not evidence:
        return UNKNOWN_QUALITY, "low", []
    strength = min(strength, 1.0)
    quality = strength * (weighted / total_weight) + (1 - strength) * UNKNOWN_QUALITY
    confidence = "high" if strength >= 0.7 else "medium" if strength >= 0.35 else "low"
    return quality, confidence, evidence


def choose_strategy(num_examples: int | None, params_m: float, device: str) -> tuple[str, str]:
    """The strategy to suggest for this data size and backbone, and why: `auto` where `zoo adapt --strategy auto`
    would try a linear probe and a fine-tuning and keep the better, else the one strategy it would use."""
    if num_examples is None:
        return "auto", "data size unknown: `zoo adapt` chooses from the data it reads"
    plan, reason = auto_candidates(num_examples, params_m, device)
    return ("auto" if len(plan) > 1 else plan[0]), reason


def adapt_command(name: str, task: str, data: str, strategy: str, device: str,
                  registry_files: Sequence[str] = ()) -> str:
    """The `zoo adapt` command line a recommendation suggests, with a ``--registry`` for each of
    ``registry_files`` (the backbone may be defined there; ``ZOO_REGISTRY`` needs none: it is read again)."""
    words = ["zoo", "adapt", name, "--task", task, "--data", data, "--strategy", strategy]
    if device == "cuda":
        words += ["--device", "cuda"]   # precision auto: bf16 where the GPU has it, else fp16
    for path in registry_files:
        words += ["--registry", path]
    return shlex.join(words)


def _next_command(spec: BackboneSpec, task: str, c: Constraints, registry_files: Sequence[str]) -> str:
    strategy, _ = choose_strategy(c.num_examples, spec.params_m, c.device)
    return adapt_command(spec.name, task, "DATA", strategy, c.device, registry_files)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _reason(spec: BackboneSpec, evidence: list[dict[str, Any]], cost: CostEstimate, c: Constraints,
            notes: list[str]) -> str:
    parts = []
    if evidence:
        best = evidence[0]
        parts.append(f"{best['metric']} {best['value']:g} ({_ordinal(best['rank'])} of {best['of']})")
    else:
        parts.append("no comparable published number (quality assumed below median)")
    budget = f" of {c.max_latency_ms:g} ms budget" if c.max_latency_ms else ""
    parts.append(f"est. {cost.latency_ms:.1f} ms{budget}")
    parts.append(f"{spec.params_m:.1f}M params")
    parts.extend(notes)
    return "; ".join(parts)


def _tie_note(rank: int, others: Sequence[str]) -> str:
    named = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    return f"tied for #{rank} with {named}"


def rank_candidates(candidates: Iterable[Candidate]) -> list[Candidate]:
    """``candidates`` best first, ranked as competitions rank (1, 2, 2, 4): equal scores as shown (``score`` is
    rounded to 4 places) share a rank, name each other in ``tied_with``, and say so first in their reason. Equals
    keep a fixed order, the cheaper (fewer GFLOPs) first, then by name. Ranking a narrower set again ranks its
    members among themselves, replacing an earlier tie note."""
    ordered = sorted(candidates, key=lambda c: (-c.score, c.gflops, c.name))
    ranked: list[Candidate] = []
    for _, group in itertools.groupby(ordered, key=lambda c: c.score):
        equals = list(group)
        rank = len(ranked) + 1
        for cand in equals:
            reason = cand.reason.removeprefix(f"{_tie_note(cand.rank, cand.tied_with)}; ") if cand.tied_with \
                else cand.reason
            others = [other.name for other in equals if other is not cand]
            ranked.append(replace(cand, rank=rank, tied_with=others,
                                  reason=f"{_tie_note(rank, others)}; {reason}" if others else reason))
    return ranked


def recommend_data_free(specs: Iterable[BackboneSpec], constraints: Constraints, *, top: int = 5,
                        scenario: ScenarioParse | None = None, available_families: Iterable[str] | None = None,
                        registry_files: Iterable[str | os.PathLike[str]] = ()) -> Recommendation:
    """Rank the backbones of ``constraints.task`` that meet every constraint, by what is known without data.

    When nothing meets every constraint, the result has no candidates, a message, and the nearest misses. The
    ``registry_files`` the specs were read from (``--registry``) are repeated in every suggested command.

    Raises:
        NoCandidateError: if the registry has no backbone at all for the task.
    """
    task = get_task(constraints.task or "").name
    registry_files = [os.fspath(path) for path in registry_files]
    pool = [spec for spec in specs if task in spec.tasks]
    if not pool:
        raise NoCandidateError(f"the registry has no {task} backbones; add some with --registry FILE.")
    families = set(available_families) if available_families is not None else None
    focus = get_task(task).focus(scenario.values.get("focus") if scenario else None)
    weights = get_task(task).prior_weights(focus=focus, language=constraints.language)
    standings = {metric: _standings(pool, metric) for metric in weights}
    profile = DEVICE_PROFILES[constraints.device]

    kept, excluded = [], []
    for spec in pool:
        cost = estimate_cost(spec, constraints.device)
        broken = _violations(spec, cost, constraints)
        if families is not None and spec.family not in families:
            broken.append((f"family {spec.family!r} is not available (see `zoo plugins`)", 100.0))
        if broken:
            excluded.append({"name": spec.name, "reason": "; ".join(text for text, _ in broken),
                             "distance": round(sum(math.log(ratio) for _, ratio in broken), 4),
                             "latency_ms": round(cost.latency_ms, 2), "params_m": spec.params_m})
        else:
            kept.append((spec, cost))
    if not kept:
        nearest = sorted(excluded, key=lambda e: e["distance"])[:3]
        return Recommendation(task=task, constraints=constraints, scenario=scenario, candidates=[],
                              excluded=excluded, nearest=nearest, device_profile=profile.to_dict(),
                              registry_files=registry_files)

    log_latency = [math.log(cost.latency_ms) for _, cost in kept]
    lo, hi = min(log_latency), max(log_latency)
    weight_speed = 0.2 if constraints.max_latency_ms or constraints.device == "cuda" else 0.35
    # Prefer a model made for the requested language only when one is among the candidates.
    dedicated_language = constraints.language not in (None, "multilingual") and any(
        constraints.language in spec.languages for spec, _ in kept)
    scored = []
    for (spec, cost), ll in zip(kept, log_latency, strict=True):
        quality, confidence, evidence = _quality(spec, standings, weights)
        speed = 1.0 if hi == lo else (hi - ll) / (hi - lo)
        fit, notes = 0.0, []
        if constraints.num_examples is not None and constraints.num_examples < 1000 and spec.params_m > 300:
            fit -= 0.1
            notes.append(f"large for {constraints.num_examples} examples")
        if dedicated_language and "multilingual" in spec.languages:
            fit -= 0.05
            notes.append(f"multilingual; a dedicated {constraints.language} model is usually stronger")
        if constraints.language is None and spec.languages and not {"multilingual", UNSTATED_LANGUAGE} & set(
                spec.languages):
            fit -= 0.2
            notes.append(f"for {', '.join(spec.languages)} only, and no language was given (--language)")
        if focus is not None:
            published = [(metric, spec.reference_value(metric)) for metric in focus.metrics
                         if spec.reference_value(metric) is not None]
            if published:
                fit += FOCUS_BONUS
                shown = {evidence[0]["metric"]} if evidence else set()   # the reason already leads with it
                more = ", ".join(f"{metric} {value:g}" for metric, value in published if metric not in shown)
                notes.append(f"ranked ahead for {focus.name}" + (f": reports {more}" if more else ""))
            else:
                notes.append(f"no published {focus.name} number")
        if confidence == "low":
            notes.append("little published evidence")
        score = (1 - weight_speed) * quality + weight_speed * speed + fit
        scored.append(Candidate(
            rank=0, name=spec.name, family=spec.family, score=round(score, 4), quality=round(quality, 4),
            speed=round(speed, 4), confidence=confidence, params_m=spec.params_m, gflops=spec.gflops,
            latency_ms=round(cost.latency_ms, 2), memory_gb=round(cost.memory_gb, 3), license=spec.license,
            languages=list(spec.languages), evidence=evidence, reason=_reason(spec, evidence, cost, constraints, notes),
            next_command=_next_command(spec, task, constraints, registry_files)))
    # Ranked among every candidate before the cut, so a tie that straddles it is still said.
    candidates = rank_candidates(scored)[:top]
    strategy, why = choose_strategy(constraints.num_examples, candidates[0].params_m, constraints.device)
    return Recommendation(task=task, constraints=constraints, scenario=scenario, candidates=candidates,
                          excluded=excluded, device_profile=profile.to_dict(), strategy=strategy,
                          strategy_reason=why, registry_files=registry_files)
