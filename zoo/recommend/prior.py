"""The data-free ranking: filter by hard constraints, then score what is known without data.

score = w_quality · quality + w_speed · speed + fit

- quality: the backbone's published reference numbers, each turned into a percentile among every backbone of the
  task that reports the same benchmark, averaged over its benchmarks (UNKNOWN_QUALITY when it reports none);
- speed: where its estimated latency sits between the fastest and slowest candidate, on a log scale;
- fit: small adjustments for the data size (very large models on very little data) and language match.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from zoo.errors import NoCandidateError
from zoo.recommend.constraints import Constraints, ScenarioParse
from zoo.recommend.cost import DEVICE_PROFILES, CostEstimate, estimate_cost
from zoo.registry import BackboneSpec
from zoo.tasks import get_task

# Benchmarks that speak to transfer quality for each task, most telling first.
PRIOR_METRICS = {
    "image-cls": ("imagenet-1k/top1", "imagenet-real/top1", "imagenet-v2/top1"),
    "text-cls": ("glue/avg", "glue/mnli-m", "xnli/avg", "xnli/en"),
    "audio-cls": ("superb/ks", "superb/er", "superb/sid", "audioset/mAP", "esc50/accuracy",
                  "librispeech-test-clean/wer"),
}


# Quality assumed for a backbone with no comparable published number: below the median, so that documented
# backbones win ties against undocumented ones, but not so low that a fast unknown can never be shown.
UNKNOWN_QUALITY = 0.35


@dataclass
class Candidate:
    rank: int
    name: str
    family: str
    score: float
    quality: float                      # 0..1 percentile of published quality (UNKNOWN_QUALITY if none)
    speed: float                        # 0..1 among the candidates (1 = fastest)
    confidence: str                     # high | medium | low: how much published evidence backs `quality`
    params_m: float
    gflops: float
    latency_ms: float                   # estimate on the device (see Recommendation.device_profile)
    memory_gb: float                    # estimate
    license: str
    languages: list[str]
    evidence: list[dict[str, Any]]      # the reference numbers used, with sources
    reason: str
    next_command: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Recommendation:
    task: str
    constraints: Constraints
    scenario: ScenarioParse | None
    candidates: list[Candidate]
    excluded: list[dict[str, str]] = field(default_factory=list)
    device_profile: dict[str, Any] = field(default_factory=dict)
    strategy: str = "auto"
    strategy_reason: str = ""
    method: str = "data-free"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "method": self.method,
            "constraints": self.constraints.to_dict(),
            "scenario": self.scenario.to_dict() if self.scenario else None,
            "device_profile": self.device_profile,
            "strategy": self.strategy, "strategy_reason": self.strategy_reason,
            "candidates": [c.to_dict() for c in self.candidates],
            "excluded": self.excluded,
        }


# --- filtering --------------------------------------------------------------------------------------------------


def _violations(spec: BackboneSpec, cost: CostEstimate, c: Constraints) -> list[str]:
    reasons = []
    if c.max_latency_ms is not None and cost.latency_ms > c.max_latency_ms:
        reasons.append(f"est. {cost.latency_ms:.1f} ms on {c.device} > {c.max_latency_ms:g} ms")
    if c.max_params_m is not None and spec.params_m > c.max_params_m:
        reasons.append(f"{spec.params_m:.1f}M params > {c.max_params_m:g}M")
    if c.max_memory_gb is not None and cost.memory_gb > c.max_memory_gb:
        reasons.append(f"est. {cost.memory_gb:.2f} GB > {c.max_memory_gb:g} GB")
    if c.language and not _speaks(spec, c.language):
        reasons.append(f"languages {', '.join(spec.languages)} do not include {c.language}")
    if c.licenses and spec.license not in c.licenses:
        reasons.append(f"licence {spec.license} not in {', '.join(c.licenses)}")
    return reasons


def _speaks(spec: BackboneSpec, language: str) -> bool:
    """Language-independent backbones (no languages listed) and multilingual ones speak every language."""
    if language == "multilingual":
        return "multilingual" in spec.languages
    return not spec.languages or language in spec.languages or "multilingual" in spec.languages


# --- scoring ----------------------------------------------------------------------------------------------------


def _percentiles(pool: list[BackboneSpec], metric: str) -> dict[str, float]:
    """Each backbone's percentile (0..1, 1 = best) among the pool's backbones reporting ``metric``."""
    values = [(spec.name, spec.reference_value(metric)) for spec in pool]
    values = [(name, v) for name, v in values if v is not None]
    if len(values) < 2:
        return {}
    lower_better = metric.endswith(("/wer", "/cer", "/error"))
    ordered = sorted(values, key=lambda item: -item[1] if lower_better else item[1])
    n = len(ordered)
    result: dict[str, float] = {}
    for value in {v for _, v in ordered}:   # ties share the mean position
        positions = [i for i, (_, v) in enumerate(ordered) if v == value]
        for i in positions:
            result[ordered[i][0]] = (sum(positions) / len(positions)) / (n - 1)
    return result


def _quality(spec: BackboneSpec, percentiles: dict[str, dict[str, float]], metrics: Iterable[str]):
    used = [(m, percentiles[m][spec.name]) for m in metrics if spec.name in percentiles.get(m, {})]
    if not used:
        return UNKNOWN_QUALITY, "low", []
    primary = next(iter(metrics))
    confidence = "high" if used[0][0] == primary else "medium"
    evidence = [{"metric": m, "value": spec.reference_value(m), "percentile": round(p, 3),
                 "source": next(r.source for r in spec.reference if r.metric == m)} for m, p in used]
    return sum(p for _, p in used) / len(used), confidence, evidence


def choose_strategy(num_examples: int | None, params_m: float | None = None) -> tuple[str, str]:
    """The adapt strategy that fits the data size, and why."""
    if num_examples is None:
        return "auto", "data size unknown: let `zoo adapt` choose from the data it reads"
    if num_examples < 1000:
        return "linear", f"{num_examples} examples: a linear probe on frozen features resists over-fitting"
    if num_examples < 20000:
        if params_m is not None and params_m <= 30:
            return "full", f"{num_examples} examples and a small backbone: full fine-tuning is affordable"
        return "lora", f"{num_examples} examples: LoRA adapts the backbone with few trainable parameters"
    return "full", f"{num_examples} examples: enough data to fine-tune every layer"


def _next_command(spec: BackboneSpec, task: str, c: Constraints) -> str:
    strategy, _ = choose_strategy(c.num_examples, spec.params_m)
    words = ["zoo", "adapt", spec.name, "--task", task, "--data", "DATA", "--strategy", strategy]
    if c.device == "cuda":
        words += ["--precision", "bf16"]
    return shlex.join(words)


def _reason(spec: BackboneSpec, cand_quality: float, evidence: list[dict[str, Any]], cost: CostEstimate,
            c: Constraints, fit_notes: list[str]) -> str:
    parts = []
    if evidence:
        best = evidence[0]
        parts.append(f"{best['metric']} {best['value']:g} (top {100 - 100 * best['percentile']:.0f}% "
                     f"of the task's backbones)")
    else:
        parts.append("no published number on this task's benchmarks (quality assumed below median)")
    budget = f" of {c.max_latency_ms:g} ms budget" if c.max_latency_ms else ""
    parts.append(f"est. {cost.latency_ms:.1f} ms{budget} on {c.device}")
    parts.append(f"{spec.params_m:.1f}M params")
    parts.extend(fit_notes)
    return "; ".join(parts)


def recommend_data_free(specs: Iterable[BackboneSpec], constraints: Constraints, *, top: int = 5,
                        scenario: ScenarioParse | None = None,
                        available_families: Iterable[str] | None = None) -> Recommendation:
    """Rank the backbones of ``constraints.task`` that meet every constraint, by what is known without data.

    Raises:
        NoCandidateError: if nothing meets the constraints; the message names the constraint that excluded most.
    """
    task = get_task(constraints.task or "").name
    pool = [spec for spec in specs if task in spec.tasks]
    families = set(available_families) if available_families is not None else None
    metrics = PRIOR_METRICS.get(task, ())
    percentiles = {m: _percentiles(pool, m) for m in metrics}

    kept, excluded = [], []
    for spec in pool:
        cost = estimate_cost(spec, constraints.device)
        problems = _violations(spec, cost, constraints)
        if families is not None and spec.family not in families:
            problems.append(f"family {spec.family!r} is not available (see `zoo plugins`)")
        if problems:
            excluded.append({"name": spec.name, "reason": "; ".join(problems)})
        else:
            kept.append((spec, cost))
    if not pool:
        raise NoCandidateError(f"the registry has no {task} backbones; add some with --registry FILE.")
    if not kept:
        detail = f" ({len(pool)} {task} backbones excluded; e.g. {excluded[0]['name']}: {excluded[0]['reason']})" \
            if excluded else ""
        raise NoCandidateError(f"no {task} backbone meets the constraints{detail}. Relax a constraint, or add "
                               "your own backbone with --registry FILE.")

    log_lat = [math.log(cost.latency_ms) for _, cost in kept]
    lo, hi = min(log_lat), max(log_lat)
    weight_speed = 0.2 if constraints.max_latency_ms or constraints.device == "cuda" else 0.35
    scored = []
    for (spec, cost), ll in zip(kept, log_lat):
        quality, confidence, evidence = _quality(spec, percentiles, metrics)
        speed = 1.0 if hi == lo else (hi - ll) / (hi - lo)
        fit, notes = 0.0, []
        if constraints.num_examples is not None and constraints.num_examples < 1000 and spec.params_m > 300:
            fit -= 0.1
            notes.append(f"large for {constraints.num_examples} examples")
        if constraints.language not in (None, "multilingual") and "multilingual" in spec.languages:
            fit -= 0.05
            notes.append("multilingual: covers the language, but monolingual models are usually stronger")
        if confidence == "low":
            notes.append("ranked on size and speed only")
        score = (1 - weight_speed) * quality + weight_speed * speed + fit
        scored.append((score, spec, cost, quality, speed, confidence, evidence, notes))
    scored.sort(key=lambda item: (-item[0], item[1].gflops))

    candidates = [
        Candidate(rank=i + 1, name=spec.name, family=spec.family, score=round(score, 4),
                  quality=round(quality, 4), speed=round(speed, 4), confidence=confidence,
                  params_m=spec.params_m, gflops=spec.gflops, latency_ms=round(cost.latency_ms, 2),
                  memory_gb=round(cost.memory_gb, 3), license=spec.license, languages=list(spec.languages),
                  evidence=evidence, reason=_reason(spec, quality, evidence, cost, constraints, notes),
                  next_command=_next_command(spec, task, constraints))
        for i, (score, spec, cost, quality, speed, confidence, evidence, notes) in enumerate(scored[:top])
    ]
    strategy, why = choose_strategy(constraints.num_examples, candidates[0].params_m)
    return Recommendation(task=task, constraints=constraints, scenario=scenario, candidates=candidates,
                          excluded=excluded, device_profile=DEVICE_PROFILES[constraints.device].to_dict(),
                          strategy=strategy, strategy_reason=why)
