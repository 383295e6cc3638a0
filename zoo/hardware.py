"""A fingerprint of the machine, for run records and benchmark results."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model as the OS names it (Linux: /proc/cpuinfo), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_device(option: str, value: str, *, allow_auto: bool = True, allow_index: bool = True) -> str:
    """``value`` when it names a device this machine has (``auto``, ``cpu``, ``cuda``, ``cuda:N``), else a one-line
    error naming ``option`` and what is available here."""
    from zoo.errors import InvalidInputError

    kinds = ("auto", "cpu", "cuda") if allow_auto else ("cpu", "cuda")
    if not isinstance(value, str):
        raise InvalidInputError(f"{option} must be one of {', '.join(kinds)}, got {value!r}")
    kind, _, index = value.strip().lower().partition(":")
    if kind not in kinds or (index and (kind != "cuda" or not index.isdigit() or not allow_index)):
        shown = ", ".join(kinds) + (" (or cuda:N)" if allow_index else "")
        raise InvalidInputError(f"{option} must be one of {shown}, got {value!r}")
    if kind == "cuda":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInputError(f"{option} {value}: no CUDA device is available here; use cpu"
                                    + (" or auto" if allow_auto else ""))
        if index and int(index) >= count:
            raise InvalidInputError(f"{option} {value}: this machine has {count} CUDA device(s), "
                                    f"cuda:0 to cuda:{count - 1}")
    return value.strip().lower()
