"""Timing a forward pass the way timm's benchmark does: warm-up, device synchronisation, repeated timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]


def time_calls(fn: Callable[[], object], *, warmup: int = 3, iters: int = 10, device: str = "cpu",
               min_seconds: float = 0.0) -> Timing:
    """Call ``fn`` ``warmup`` times, then time at least ``iters`` calls (and ``min_seconds`` in all).

    On CUDA the device is synchronised around every timed call, so queued kernels are counted.
    """
    import torch

    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        synchronize()
        samples: list[float] = []
        started = time.perf_counter()
        while len(samples) < iters or time.perf_counter() - started < min_seconds:
            begin = time.perf_counter()
            fn()
            synchronize()
            samples.append((time.perf_counter() - begin) * 1000.0)
    return Timing(tuple(samples))
