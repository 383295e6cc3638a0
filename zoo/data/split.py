"""Label order, the stratified validation split, and the dataset fingerprint."""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from zoo.data.base import Example

_INTEGER = re.compile(r"[+-]?\d+")
_CHUNK = 1 << 20


def sort_label_names(names: Iterable[str]) -> list[str]:
    """Label names in sorted order; when every name is an integer, in numeric order.

    Numeric order keeps index ``i`` on label ``"i"`` for the common 0..N-1 labels even past 9 (string order would
    put "10" before "2").
    """
    unique = set(names)
    if unique and all(_INTEGER.fullmatch(name) for name in unique):
        return sorted(unique, key=lambda name: (int(name), name))
    return sorted(unique)


def stratified_split(examples: Sequence[Example], fraction: float,
                     seed: int) -> tuple[list[Example], list[Example]]:
    """Move ``fraction`` of each class from ``examples`` to a validation split.

    A class with ``n`` examples gives ``round(fraction * n)`` of them, at least 1 when ``n >= 2``, none when
    ``n == 1``, and never all of them (so every class stays in training). Multi-label examples are grouped by their
    first label. Both splits keep the input order.

    Args:
        examples: the training examples.
        fraction: the share to move, in [0, 1).
        seed: seeds ``random.Random``; the same examples and seed give the same split.

    Returns:
        ``(train, val)``.
    """
    by_class: dict[int, list[int]] = defaultdict(list)
    for position, example in enumerate(examples):
        by_class[example.labels[0]].append(position)
    rng = random.Random(seed)
    chosen: set[int] = set()
    for label in sorted(by_class):
        members = by_class[label]
        n = len(members)
        take = 0 if n < 2 or fraction <= 0 else min(n - 1, max(1, round(fraction * n)))
        shuffled = members[:]
        rng.shuffle(shuffled)
        chosen.update(shuffled[:take])
    train = [ex for i, ex in enumerate(examples) if i not in chosen]
    val = [ex for i, ex in enumerate(examples) if i in chosen]
    return train, val


def fingerprint(splits: Sequence[tuple[str, Sequence[Example]]], label_names: Sequence[str]) -> str:
    """SHA-256 hex digest of every split's examples (id, labels, content) in order, and the label names.

    Content is a file's bytes for a path and the UTF-8 text for a string, so the same data gives the same digest
    wherever it lies, and one changed pixel or word changes it.
    """
    digest = hashlib.sha256()
    for name, examples in splits:
        digest.update(f"\x00split:{name}:{len(examples)}\x00".encode())
        for example in examples:
            labels = ",".join(map(str, example.labels))
            digest.update(f"{example.id}\x00{labels}\x00".encode())
            digest.update(content_digest(example.input))  # fixed length, so no boundary ambiguity
    digest.update(b"\x00labels\x00" + "\x00".join(label_names).encode())
    return digest.hexdigest()


def content_digest(value: Any) -> bytes:
    """SHA-256 of an example's content: file bytes (read in chunks), text, or an in-memory value."""
    digest = hashlib.sha256()
    if isinstance(value, Path):
        with open(value, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    else:
        _update(digest, value)
    return digest.digest()


def _update(digest: Any, value: Any) -> None:
    """Feed an in-memory value (from the ``datasets`` library: text, image, audio dict, array) to ``digest``."""
    if isinstance(value, str):
        digest.update(b"s" + value.encode())
    elif isinstance(value, bytes | bytearray):
        digest.update(b"b" + bytes(value))
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(f"k{key}\x00".encode())
            _update(digest, value[key])
    elif isinstance(value, list | tuple):
        digest.update(f"l{len(value)}\x00".encode())
        for part in value:
            _update(digest, part)
    elif callable(getattr(value, "tobytes", None)):
        # numpy arrays and PIL images: the shape/mode says how the bytes are laid out
        layout = [getattr(value, attr, None) for attr in ("dtype", "shape", "mode", "size")]
        digest.update(f"a{layout}\x00".encode())
        digest.update(value.tobytes())
    else:
        digest.update(f"r{value!r}\x00".encode())
