"""Weight averaging: model soups (Wortsman et al., 2022, "Model soups: averaging weights of multiple fine-tuned
models improves accuracy without increasing inference time").

Models fine-tuned from the same pretrained weights often lie in one basin of the loss, where the average of their
weights is itself a good model, as fast as any one of them. The *uniform* soup averages every ingredient; the
*greedy* soup ranks the ingredients by their held-out score, starts from the best, and adds the next only if the
held-out score of the average does not drop, so its held-out score is never below the best ingredient's.

This module knows state dicts and scores only: `zoo soup` (:mod:`zoo.better.soup`) feeds it finished runs, and the
training loop (``--soup-top-k``) the best epochs of one run. Sums are kept in float64 and cast back to each tensor's
own dtype; a tensor that is not floating point (a step counter, position ids) is taken from the first ingredient.
One ingredient is held at a time beside the running sums: the caller loads them one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zoo.errors import InvalidInputError

METHODS = ("greedy", "uniform")


class WeightSum:
    """Running float64 sums of state dicts with the same names and shapes."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}       # floating-point tensors: float64 sums
        self.kept: dict[str, Any] = {}       # other tensors: the first ingredient's
        self.dtypes: dict[str, Any] = {}
        self.count = 0

    def add(self, tensors: Mapping[str, Any], *, name: str = "ingredient") -> None:
        """Add one ingredient's tensors to the sums (refused, naming ``name``, when they do not match)."""
        import torch

        if self.count:
            self._check(tensors, name)
        for key, tensor in tensors.items():
            tensor = tensor.detach()
            if not tensor.is_floating_point():
                self.kept.setdefault(key, tensor.to("cpu", copy=True))
            elif key in self.sums:
                self.sums[key] += tensor.to("cpu", torch.float64)
            else:   # a copy, even of a float64 CPU tensor: the caller's model may change under it
                self.sums[key] = tensor.to("cpu", torch.float64, copy=True)
                self.dtypes[key] = tensor.dtype
        self.count += 1

    def average(self, plus: Mapping[str, Any] | None = None, *, name: str = "ingredient") -> dict[str, Any]:
        """The average of the ingredients added, or of those and ``plus`` (a trial; the sums are not changed),
        each tensor in its own dtype."""
        if not self.count:
            raise ValueError("no ingredient added")
        if plus is not None:
            self._check(plus, name)
        count = self.count + (plus is not None)
        averaged = dict(self.kept)
        for key, total in self.sums.items():
            if plus is not None:
                total = total + plus[key].detach().cpu().double()
            averaged[key] = (total / count).to(self.dtypes[key])
        return averaged

    def _check(self, tensors: Mapping[str, Any], name: str) -> None:
        names = set(self.sums) | set(self.kept)
        if set(tensors) != names:
            odd = sorted(set(tensors) ^ names)
            raise InvalidInputError(f"{name}: its weights are named differently from the first ingredient's "
                                    f"({', '.join(odd[:3])}{', ...' if len(odd) > 3 else ''}); only models of one "
                                    "architecture can be averaged")
        for key, tensor in tensors.items():
            first = self.sums.get(key, self.kept.get(key))
            if tuple(tensor.shape) != tuple(first.shape):
                raise InvalidInputError(f"{name}: weight {key} has shape {tuple(tensor.shape)}, not "
                                        f"{tuple(first.shape)} as in the first ingredient; only models of one "
                                        "architecture can be averaged")


@dataclass
class Tried:
    """One ingredient as the soup met it."""

    name: str                    # a run folder, or "epoch 3"
    score: float                 # its own held-out score, by which the ingredients were ranked
    kept: bool                   # whether it is in the soup
    soup_score: float | None     # greedy: the held-out score of the soup with it (refused: the trial's)


@dataclass
class Soup:
    """What a soup came to: the averaged tensors, and how they were chosen."""

    method: str
    metric: str
    tensors: dict[str, Any]
    tried: list[Tried]
    score: float                  # the soup's held-out score
    best_ingredient: float        # the best ingredient's (greedy: measured as the soup's is, the soup of one)
    outputs: Any = None           # what ``evaluate`` returned beside the soup's score (its logits, say)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> list[str]:
        return [entry.name for entry in self.tried if entry.kept]

    def to_record(self) -> dict[str, Any]:
        """The run record's "soup" section (without the tensors)."""
        return {"method": self.method, "metric": self.metric, "score": self.score,
                "best_ingredient": self.best_ingredient, "gain": self.score - self.best_ingredient,
                "kept": self.kept, "ingredients": [asdict(entry) for entry in self.tried], **self.extra}


def rank(scores: Mapping[str, float]) -> list[str]:
    """The ingredients, best held-out score first (a tie keeps the order given)."""
    return sorted(scores, key=lambda name: -scores[name])


def make_soup(scores: Mapping[str, float], *, load: Callable[[str], Mapping[str, Any]],
              evaluate: Callable[[dict[str, Any]], tuple[float, Any]], method: str = "greedy", metric: str = "",
              say: Callable[[str], None] | None = None) -> Soup:
    """Average the ingredients named by ``scores`` (each one's held-out score) as ``method`` says.

    ``load(name)`` gives an ingredient's tensors (called once per ingredient, in ranked order, so that only one is
    held at a time); ``evaluate(tensors)`` puts averaged tensors into the model and returns (held-out score,
    anything else to keep, such as the logits). Greedy evaluates the best ingredient alone first, then each trial:
    1 + (ingredients - 1) evaluations. Uniform evaluates once. The model is left holding the last tensors
    evaluated, which may be a refused trial: put :attr:`Soup.tensors` into it afterwards.
    """
    if method not in METHODS:
        raise InvalidInputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    say = say or (lambda text: None)
    order = rank(scores)
    total = WeightSum()
    total.add(load(order[0]), name=order[0])
    if method == "uniform":
        for name in order[1:]:
            total.add(load(name), name=name)
        tensors = total.average()
        score, outputs = evaluate(tensors)
        say(f"uniform soup of {len(order)}: {metric} {score:.4g}")
        tried = [Tried(name, scores[name], True, None) for name in order]
        return Soup(method, metric, tensors, tried, score, scores[order[0]], outputs)

    tensors = total.average()
    current, outputs = evaluate(tensors)
    best = current
    tried = [Tried(order[0], scores[order[0]], True, current)]
    say(f"greedy soup: starts from {order[0]} ({metric} {current:.4g})")
    for name in order[1:]:
        ingredient = load(name)
        trial = total.average(plus=ingredient, name=name)
        score, trial_outputs = evaluate(trial)
        kept = score >= current   # "does not drop": a tie is kept, as in the paper
        if kept:
            total.add(ingredient, name=name)
            tensors, current, outputs = trial, score, trial_outputs
        tried.append(Tried(name, scores[name], kept, score))
        say(f"{'added' if kept else 'left out'} {name}: soup {metric} {score:.4g}")
    return Soup(method, metric, tensors, tried, current, best, outputs)


def top_epochs(snapshots: Sequence[tuple[int, float]], k: int) -> list[int]:
    """The epochs of the ``k`` best (epoch, score) pairs, the earlier winning a tie (as the loop's best does)."""
    return [epoch for epoch, _ in sorted(snapshots, key=lambda pair: (-pair[1], pair[0]))[:k]]
