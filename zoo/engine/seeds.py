"""Random draws that depend on where they happen in a run, not on what ran before them.

Training draws random numbers per example (augmentation) and per batch (dropout, SpecAugment masks). Each draw
comes from a seed derived from (run seed, epoch, example or batch index), so batch k of an epoch sees the same
numbers whether the run went straight through, was resumed mid-epoch, or loads examples in worker processes.
Third-party code (timm's transforms, torch's dropout, numpy in feature extractors) draws from the global
generators, so those are seeded for the duration of a step and given back their previous state afterwards.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every part and on their order (no two keys share a stream by accident)."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextmanager
def seeded_globals(seed: int, device=None) -> Iterator[None]:
    """Seed Python's ``random``, ``numpy.random`` and torch's CPU generator (and ``device``'s, when it is a CUDA
    device) with ``seed``; restore their previous states on exit."""
    import torch

    devices = [device] if device is not None and getattr(device, "type", None) == "cuda" else []
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)   # torch.manual_seed would also reseed every CUDA device
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
