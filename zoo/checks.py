"""The checks every option goes through before any work starts, each failing with one line that names the option
and the values it accepts.

A leaf: imports nothing from zoo but the errors. Every command checks its numbers here, so `--lr inf`, `--top 0`
or `--max-latency-ms nan` are refused the same way wherever they are given, before a file is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from zoo.errors import InvalidInputError

__all__ = ["number", "whole", "choice", "seed", "text", "MAX_SEED"]

MAX_SEED = 2**32 - 1   # numpy and torch accept seeds up to here


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "" if low is None else f"{'above' if low_open else 'at least'} {low:g}"
    right = "" if high is None else f"{'below' if high_open else 'at most'} {high:g}"
    if left and right:
        return f"{left} and {right}"
    return left or right


def _absent(option: str, value: Any, allow_none: bool) -> bool:
    """Whether the option was not given (and may not be), refusing a missing required one."""
    if value is not None:
        return False
    if allow_none:
        return True
    raise InvalidInputError(f"{option} is required")


def number(option: str, value: Any, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, allow_none: bool = True) -> float | None:
    """``value`` as a finite float within the bounds, or an error naming ``option`` and the allowed range.

    Args:
        option: how the person gave it, e.g. ``"--lr"``.
        low, high: bounds; ``low_open``/``high_open`` exclude them.
        allow_none: whether ``None`` (the option was not given) passes.
    """
    if _absent(option, value, allow_none):
        return None
    wanted = _bounds(low, high, low_open, high_open)
    wanted = f"a finite number {wanted}" if wanted else "a finite number"
    if isinstance(value, bool):
        raise InvalidInputError(f"{option} must be {wanted}, got {value!r}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{option} must be {wanted}, got {value!r}") from None
    too_low = low is not None and (as_float <= low if low_open else as_float < low)
    too_high = high is not None and (as_float >= high if high_open else as_float > high)
    if not math.isfinite(as_float) or too_low or too_high:
        raise InvalidInputError(f"{option} must be {wanted}, got {value!r}")
    return as_float


def whole(option: str, value: Any, *, low: int | None = 1, high: int | None = None,
          allow_none: bool = True) -> int | None:
    """``value`` as an int within ``[low, high]``, or an error naming ``option`` and the allowed range."""
    if _absent(option, value, allow_none):
        return None
    wanted = _bounds(low, high, False, False)
    wanted = f"a whole number {wanted}" if wanted else "a whole number"
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidInputError(f"{option} must be {wanted}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidInputError(f"{option} must be {wanted}, got {value}")
    return value


def choice(option: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` when it is one of ``allowed``, else an error listing them."""
    if value not in allowed:
        raise InvalidInputError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def seed(option: str, value: Any) -> int:
    """A random seed: a whole number in ``[0, 2**32 - 1]``."""
    return whole(option, value, low=0, high=MAX_SEED, allow_none=False)


def text(option: str, value: Any, *, allow_none: bool = True) -> str | None:
    """A non-blank string (a path, a name), or an error saying the option was given empty."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{option} is empty; give a value")
    return value
