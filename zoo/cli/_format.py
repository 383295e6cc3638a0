"""How numbers, times and paths read in every command's output: one rule each, so that a value looks the same in
`zoo adapt`'s summary, `zoo runs` and `zoo bench`."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

MISSING = "—"


def metric(value: Any) -> str:
    """A metric or other measured value: 4 decimals (0.9123), small ones (learning rates) in exponent form,
    large ones with one decimal; whole numbers as they are; a missing value as a dash."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        if value and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def setting(value: Any) -> str:
    """A configuration value: as short as Python writes it (3e-04 as 0.0003, lists joined by commas)."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(setting(v) for v in value) or "[]"
    return str(value)


def when(iso: Any) -> str:
    """An ISO timestamp to the minute: 2024-05-02 10:00."""
    if not iso:
        return MISSING
    try:
        return datetime.fromisoformat(str(iso)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(iso)


def duration(seconds: Any) -> str:
    """Seconds as 12.3s, 2m05s or 1h04m."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return MISSING
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def milliseconds(value: float) -> str:
    return f"{value:.2f} ms"


def megabytes(size_bytes: float) -> str:
    return f"{size_bytes / 1e6:.1f} MB"


def home(path: Any) -> str:
    """A path with the home folder written as ~."""
    text, home_dir = str(path), os.path.expanduser("~")
    if home_dir not in ("", "/") and (text == home_dir or text.startswith(home_dir + os.sep)):
        return "~" + text[len(home_dir):]
    return text
