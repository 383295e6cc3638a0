"""How long each transferability estimator of `zoo recommend --data` takes on one backbone's sample.

The sample is the default `--sample` of a BERT-base-sized backbone: N = 1000 examples, D = 768 features (random
normal), 10 classes. Each estimator runs once to warm up, then `--repeats` times; the table gives the median wall
time and the median CPU time of the process (all its threads). On a busy machine the wall time grows with the
load, and multi-threaded BLAS suffers most; with `OPENBLAS_NUM_THREADS=1` the CPU time stays close to what a quiet
machine's wall time would be.

    python benchmarks/estimator_speed.py [--repeats 5] [--write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from _report import machine, table, write_section

N, D, CLASSES = 1000, 768, 10


def timings(estimator, features: np.ndarray, labels: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``estimator(features, labels)`` after one warm-up call."""
    estimator(features, labels)
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        estimator(features, labels)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    from zoo.recommend.estimators import ESTIMATOR_LABELS, ESTIMATORS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(N, D)), rng.integers(0, CLASSES, N)
    rows = []
    for name, estimator in ESTIMATORS.items():
        wall, cpu = timings(estimator, features, labels, args.repeats)
        rows.append([ESTIMATOR_LABELS[name], f"{wall * 1000:.0f} ms", f"{cpu * 1000:.0f} ms"])
        print(f"{name}: wall {wall * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms", file=sys.stderr)
    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    command = f"{f'OPENBLAS_NUM_THREADS={threads} ' if threads else ''}python benchmarks/estimator_speed.py --write"
    body = "\n".join([
        "## Transferability estimators: time for one backbone's sample", "",
        f"N = {N}, D = {D}, {CLASSES} classes, random normal features; median of {args.repeats} after a warm-up. "
        f"{machine()}; BLAS threads: {threads or 'as many as cores'}; load average {load:.1f} when it started "
        f"(other work on the machine). Reproduce: `{command}`.", "",
        table(["estimator", "wall time", "CPU time (all threads)"], rows),
    ])
    print(body)
    if args.write:
        write_section("estimator_speed", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
