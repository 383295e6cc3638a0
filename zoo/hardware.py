"""A fingerprint of the machine, for run records and benchmark results; which devices exist here."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError


def launch_section(environ: dict[str, str] | None = None) -> dict[str, int] | None:
    """The run record's "launch" section for a rank that torchrun (zoo's launcher, or accelerate launch) started:
    ``{"processes": ranks per machine, "nodes": machines}``, so `--resume` starts the same count again; None
    for one process."""
    environ = os.environ if environ is None else environ
    world = int(environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    local = int(environ.get("LOCAL_WORLD_SIZE", world))
    return {"processes": local, "nodes": max(1, world // max(1, local))}


def cpu_name() -> str:
    """The CPU model as the OS names it (Linux: /proc/cpuinfo), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(device, *, processes: int | None = None, libraries: Sequence[str] = ()) -> dict[str, Any]:
    """What a run's or a benchmark's numbers depend on: the device (a torch.device), CPU, threads, the versions of
    torch, zoo and ``libraries`` (the measured family's, Family.library), and on a GPU its name, compute capability
    and driver; ``processes`` (data-parallel processes) when given.

    The one fingerprint: a run record's ``hardware`` and a bench result's ``fingerprint`` are both this.
    """
    import torch

    info: dict[str, Any] = {"device": str(device), "cpu": cpu_name(), "threads": torch.get_num_threads(),
                            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                            "platform": platform.platform()}
    if processes is not None:
        info["processes"] = processes
    for package in ("zoo-hub", *libraries):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        try:
            import subprocess

            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def check_device(option: str, value: str, *, allow_auto: bool = True, allow_index: bool = True) -> str:
    """``value`` when it names a device this machine has (``auto``, ``cpu``, ``cuda``, ``cuda:N``), else a one-line
    error naming ``option`` and what is available here."""
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
