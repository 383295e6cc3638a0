"""Strict JSON for everything zoo writes or prints: ``NaN`` and ``Infinity`` never appear.

Python's ``json`` writes non-finite floats as ``NaN``/``Infinity``, which most JSON parsers refuse. Every record
file, history row and ``--json`` output goes through :func:`dumps`: a non-finite number becomes ``null``, and in
an object a ``"<key>_note"`` beside it says what it was, so a script reads a missing value with its reason.
"""

from __future__ import annotations

import math
import os
from datetime import date, datetime
from typing import Any

__all__ = ["dumps", "strict"]


def strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (noted beside it in objects) and every value
    ``json`` cannot write (paths, numpy and torch numbers and arrays, sets, datetimes) made plain."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            key = str(key)
            plain = strict(item)
            out[key] = plain
            if plain is None and _non_finite(item):
                out.setdefault(f"{key}_note", f"not a finite number ({_describe(item)})")
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [strict(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    for method in ("tolist", "item"):   # numpy and torch scalars and arrays
        if callable(getattr(value, method, None)):
            return strict(getattr(value, method)())
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`strict` ``(value)``, refusing any non-finite number that slipped through."""
    import json

    return json.dumps(strict(value), allow_nan=False, **kwargs)


def _non_finite(value: Any) -> bool:
    try:
        return isinstance(float(value), float) and not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _describe(value: Any) -> str:
    number = float(value)
    return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
