"""Timing a forward pass the way timm's benchmark does: warm-up, device synchronisation, repeated timing; and
whether the machine was quiet enough while timing to trust the figures."""

from __future__ import annotations

import os
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


# --- Is the machine quiet enough to trust a timing? ---------------------------------------------------------------

# Other processes' CPU use, in cores, that a measurement tolerates beyond the cores it leaves free: below it, the
# background daemons every machine runs; above it, another process is competing for the cores being timed.
BUSY_CORES = 0.3
# The share of the machine's CPU time a hypervisor may take (steal) before figures from a virtual machine mislead.
STEAL_FRACTION = 0.05


@dataclass(frozen=True)
class CpuSample:
    """The machine's and this process's CPU time so far (Linux /proc/stat), in seconds."""

    busy_s: float       # all CPUs, working (user, nice, system, irq, softirq)
    steal_s: float      # taken by the hypervisor
    total_s: float      # all CPUs, every state
    own_s: float        # this process (user + system, all its threads)
    wall_s: float       # time.perf_counter()


def cpu_sample() -> CpuSample | None:
    """A snapshot of CPU time, or None where /proc/stat is missing or unreadable (not Linux)."""
    try:
        with open("/proc/stat") as stat:
            fields = [float(value) for value in stat.readline().split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if len(fields) < 8:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    own = os.times()
    return CpuSample(busy_s=(user + nice + system + irq + softirq) / tick, steal_s=steal / tick,
                     total_s=sum(fields[:8]) / tick, own_s=own.user + own.system, wall_s=time.perf_counter())


def load_warning(threads: int) -> str | None:
    """A warning when the 1-minute load average is above the cores left free by a measurement on ``threads``
    threads (with half a core of slack for the measuring process's own start), or None (also where the load
    average is unknown)."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    cores = os.cpu_count() or 1
    free = max(0, cores - threads)
    if load <= free + 0.5:
        return None
    return (f"the machine was busy before timing began: load average {load:.2f} over 1 minute, and {threads} of "
            f"{cores} cores are timed ({free} free); figures may be slower than on a quiet machine")


def busy_warnings(before: CpuSample | None, after: CpuSample | None, threads: int) -> list[str]:
    """Warnings about the time between two snapshots: other processes' CPU use beyond the cores left free by a
    measurement on ``threads`` threads, and CPU steal. Empty where either snapshot is missing."""
    if before is None or after is None or after.wall_s <= before.wall_s:
        return []
    cores = os.cpu_count() or 1
    wall = after.wall_s - before.wall_s
    others = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / wall
    free = max(0, cores - threads)
    found = []
    if others > free + BUSY_CORES:
        found.append(f"other processes used {others:.1f} of {cores} cores while timing ({threads} timed, "
                     f"{free} free); figures may be slower than on a quiet machine")
    total = after.total_s - before.total_s
    steal = (after.steal_s - before.steal_s) / total if total > 0 else 0.0
    if steal > STEAL_FRACTION:
        found.append(f"the hypervisor took {100 * steal:.0f}% of the CPU time while timing (steal); figures from "
                     "this virtual machine may vary between runs")
    return found
