"""The run record, ``zoo_run.json``: the one place that reads, writes and migrates it and says whether a run
finished.

The engine builds the record as a JSON object while the run goes (backbone, data, configuration, metrics...) and
writes it at each step; :class:`RunRecord` wraps that object with the questions readers ask. Records carry their
format's version under ``"zoo_run_version"``; one without it is version 1. Reading migrates an older record to the
current version, step by step; a record from a newer zoo is refused rather than misread.

A record is replaced atomically (written beside, then renamed), as strict JSON (:mod:`zoo.jsonio`): a killed
process leaves the previous record whole, and a run says ``"finished"`` only in the last write of its life.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import jsonio
from zoo.better.ensembled import member_dirs
from zoo.errors import InvalidInputError, NonFiniteWeightsError, ZooError, disk_error

RUN_RECORD = "zoo_run.json"
VERSION_KEY = "zoo_run_version"
RECORD_VERSION = 1                        # the format written now
STATUSES = ("running", "finished", "failed")

# version -> the step that turns a record of that version into one of the next. Empty while there is one version.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass
class RunRecord:
    """One run's record at the current version. ``fields`` is the JSON object itself, as the engine builds it."""

    fields: dict[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "run record") -> RunRecord:
        """The record of ``data`` as read from a file or the history, migrated to the current version.

        Raises:
            zoo.errors.InvalidInputError: naming ``where``, for a record of a newer version than this zoo knows.
        """
        return cls(migrate(dict(data), where=where))

    def to_dict(self) -> dict[str, Any]:
        return self.fields

    @property
    def version(self) -> int:
        return record_version(self.fields)

    @property
    def status(self) -> str | None:
        """Where the run is: "running" until the model, plots and card are written, then "finished"; or
        "failed", with :attr:`error`."""
        return self.fields.get("status")

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def error(self) -> str | None:
        """The one-line reason a failed run gives (exception type first)."""
        return self.fields.get("error")

    @property
    def task(self) -> str | None:
        return self.fields.get("task")


def record_version(data: Mapping[str, Any]) -> int:
    """The format version of a record's JSON object (1 for records written before versions were marked)."""
    version = data.get(VERSION_KEY, 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


def migrate(data: dict[str, Any], *, where: str = "run record") -> dict[str, Any]:
    """``data`` brought to :data:`RECORD_VERSION` through :data:`MIGRATIONS`, one version at a time."""
    version = record_version(data)
    if version > RECORD_VERSION:
        raise InvalidInputError(f"{where}: written by a newer zoo (record version {version}; this one reads up to "
                                f"{RECORD_VERSION}); upgrade zoo to read it")
    while version < RECORD_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
        data[VERSION_KEY] = version
    return data


def record_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / RUN_RECORD


def has_record(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a run record: a run started there (whatever became of it)."""
    return record_path(run_dir).is_file()


def read_record(run_dir: str | os.PathLike) -> RunRecord:
    """The record of the run in ``run_dir``, whatever its status.

    Raises:
        zoo.errors.InvalidInputError: not a run directory, an unreadable record, or one from a newer zoo.
    """
    path = record_path(run_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"{run_dir}: not a zoo run directory (no {RUN_RECORD})") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: unreadable run record ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: unreadable run record (not a JSON object)")
    return RunRecord.from_dict(data, where=str(path))


def read_finished_record(run_dir: str | os.PathLike) -> RunRecord:
    """The record of a run that finished and whose saved weights are finite: what predict, bench and push use.

    Raises:
        zoo.errors.InvalidInputError: not a run directory, or the run has not finished (with the way on).
        zoo.errors.NonFiniteWeightsError: the saved weights hold NaN or infinite values.
    """
    record = read_record(run_dir)
    if not record.finished:
        status = record.status
        why = f": {record.error}" if status == "failed" and record.error else ""
        way_on = ("fix the cause, then resume it" if status == "failed" else "finish it")
        way_on += f" with 'zoo adapt --resume {run_dir}'"
        raise InvalidInputError(f"{run_dir}: the run has not finished (status {status!r}{why}); {way_on}")
    check_finite_weights(Path(run_dir))
    return record


def write_record(run_dir: str | os.PathLike, record: RunRecord | Mapping[str, Any]) -> None:
    """Replace zoo_run.json atomically, as strict JSON (a non-finite number is written as null).

    Raises:
        zoo.errors.DiskFullError: when the disk is full; other write failures as they are.
    """
    fields = record.to_dict() if isinstance(record, RunRecord) else record
    path = record_path(run_dir)
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(jsonio.dumps(fields, indent=2))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, path) from exc


def check_finite_weights(directory: Path) -> None:
    """Refuse a saved model whose safetensors files hold NaN or infinite values: such a run is never finished.

    Raises:
        zoo.errors.NonFiniteWeightsError: naming the folder and the first tensors at fault.
    """
    import torch
    from safetensors import safe_open

    bad: list[str] = []
    for file in weight_files(directory):
        with safe_open(str(file), framework="pt") as weights:
            for name in weights.keys():  # noqa: SIM118 (safe_open is not a dict)
                tensor = weights.get_tensor(name)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    bad.append(f"{file.relative_to(directory).as_posix()}:{name}")
    if bad:
        raise NonFiniteWeightsError(directory, bad)


def weight_files(directory: str | os.PathLike) -> list[Path]:
    """A saved model's weights: its safetensors files, and an ensemble's members' (`zoo ensemble`) too."""
    files = sorted(Path(directory).glob("*.safetensors"))
    for member in member_dirs(directory):
        files += weight_files(member)
    return files


def record_failure(run_dir: str | os.PathLike, record: dict[str, Any], exc: BaseException,
                   on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Mark the run in ``run_dir`` failed with ``exc``'s one-line reason, dropping its temporary files, and tell the
    run history (``on_record``). Neither a full disk nor a history that refuses hides the failure being reported."""
    for tmp in Path(run_dir).glob("*.tmp"):
        tmp.unlink(missing_ok=True)
    record.update(status="failed", error=(f"{type(exc).__name__}: {exc}".splitlines() or [""])[0])
    try:
        write_record(run_dir, record)
    except OSError:
        pass      # a full disk may refuse even this; the history below still says "failed"
    if on_record is not None:
        try:
            on_record(record)
        except ZooError:
            pass  # the failure being reported matters more than the history's
