"""The linear strategy's feature cache: the frozen backbone's head inputs, computed once per backbone and data.

Entries are safetensors files under the user cache directory, keyed by the backbone (name, source, revision),
the data fingerprint, the split and the preprocessing that matters (audio length cap, text length). `zoo adapt
--strategy linear` reuses them across runs, and `zoo recommend --data` will share them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    override = os.environ.get("ZOO_FEATURE_CACHE")
    if override:
        return Path(override)
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "zoo" / "features"


def cache_key(spec, *, fingerprint: str, split: str, extra: dict[str, Any]) -> str:
    identity = {"backbone": spec.name, "source": spec.source, "revision": spec.revision, "family": spec.family,
                "data": fingerprint, "split": split, **extra}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return f"{spec.name.replace('/', '--')}-{split}-{digest}"


def load_cached(key: str):
    """The cached (features, targets) for ``key``, or None."""
    from safetensors.torch import load_file

    path = cache_root() / f"{key}.safetensors"
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
    except Exception:  # a truncated or foreign file is recomputed, never trusted
        return None
    return tensors["features"], tensors["targets"]


def save_cached(key: str, features, targets) -> Path:
    """Write atomically: a reader never sees half a file."""
    from safetensors.torch import save_file

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{key}.safetensors"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"features": features.contiguous(), "targets": targets.contiguous()}, str(tmp))
    os.replace(tmp, path)
    return path
