"""SHAP's partition explainer: Owen values over a binary hierarchy of contiguous units, within a budget.

The units (words in reading order, image regions row by row, stretches of time) are split in halves, the halves in
halves, down to single units. A node's share of the change ``f(context + node) − f(context)`` is split between its
halves by averaging over the two orders in which they can join, which gives each half two contexts (without and
with its sibling), each at half the weight. Splitting a node costs two evaluations (each half alone in the
context); nodes are split in order of how much they carry, so the budget goes where the attribution is. A node
left unsplit when the budget runs out shares its part evenly among its units. Every split keeps the sum, so the
values always add up to ``f(all units) − f(no unit)``, and with budget enough to split every node in every context
they are the exact Owen values of the hierarchy.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(order=True)
class _Node:
    priority: float
    order: int
    start: int = field(compare=False)      # the units [start, end) of this node
    end: int = field(compare=False)
    context: Any = field(compare=False)    # (units,) bool: the units outside the node that are present
    weight: float = field(compare=False)
    without: float = field(compare=False)  # f(context)
    with_: float = field(compare=False)    # f(context + node)


def owen_values(evaluate: Callable[[Any], Any], n_units: int, *, max_evals: int = 256,
                batch_size: int = 16) -> tuple[Any, int]:
    """Owen values of ``n_units`` units for ``evaluate``, which maps a (k, n_units) bool tensor of present units to
    k float scores. At most ``max_evals`` evaluations (and never fewer than the two that fix the total), up to
    ``batch_size`` at a time. Returns the values (a float64 tensor) and the evaluations made."""
    import torch

    none = torch.zeros(1, n_units, dtype=torch.bool)
    both = evaluate(torch.cat([none, ~none]))
    values = torch.zeros(n_units, dtype=torch.float64)
    evaluations = 2
    counter = 0
    queue: list[_Node] = []

    def push(start: int, end: int, context, weight: float, without: float, with_: float) -> None:
        nonlocal counter
        amount = weight * (with_ - without)
        if end - start == 1:
            values[start] += amount
            return
        counter += 1
        heapq.heappush(queue, _Node(-abs(amount), counter, start, end, context, weight, without, with_))

    push(0, n_units, none[0], 1.0, float(both[0]), float(both[1]))
    while queue and evaluations + 2 <= max_evals:
        room = min(batch_size, (max_evals - evaluations) // 2)
        taken = [heapq.heappop(queue) for _ in range(min(room, len(queue)))]
        masks = []
        for node in taken:
            middle = (node.start + node.end) // 2
            left, right = node.context.clone(), node.context.clone()
            left[node.start:middle] = True
            right[middle:node.end] = True
            masks += [left, right]
        scores = evaluate(torch.stack(masks)).tolist()
        evaluations += len(masks)
        for index, node in enumerate(taken):
            middle = (node.start + node.end) // 2
            left_only, right_only = scores[2 * index], scores[2 * index + 1]
            half = node.weight / 2
            with_left, with_right = masks[2 * index], masks[2 * index + 1]
            # Each half joins either before its sibling (the node's context) or after it (context + sibling).
            push(node.start, middle, node.context, half, node.without, left_only)
            push(node.start, middle, with_right, half, right_only, node.with_)
            push(middle, node.end, node.context, half, node.without, right_only)
            push(middle, node.end, with_left, half, left_only, node.with_)
    for node in queue:   # the budget ran out: what a node carries is shared evenly among its units
        values[node.start:node.end] += node.weight * (node.with_ - node.without) / (node.end - node.start)
    return values, evaluations
