"""A distilled run's teacher: its logits over the run's data, computed once and kept in the run's state folder.

The teacher is a finished run (or anything :func:`zoo.loading.load_saved` loads from its folder: an ensemble runs
every member), run on each split's un-augmented inputs through its own preprocessing. Its training-split logits are
the soft targets the student learns from (:class:`zoo.engine.batches.SoftTargets`); its validation and test logits
score the teacher on the very examples the student is scored on. They are written to
``RUN/.zoo/teacher_logits.safetensors``, keyed by the teacher's record and the data's fingerprint, so a resumed run
reads them back rather than running the teacher again; the file goes when the run finishes, with the checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.base import DataSplits
from zoo.engine.batches import ExampleDataset, collect_outputs, make_collate
from zoo.engine.metrics import compute_metrics, headline
from zoo.engine.rundir import STATE_DIR
from zoo.engine.trainer import Reporter
from zoo.errors import InvalidInputError
from zoo.loading import load_saved
from zoo.plugins import get_plugin_manager
from zoo.precision import autocast
from zoo.runs.record import read_finished_record

TEACHER_FILE = "teacher_logits.safetensors"
SPLITS = ("train", "val", "test")
# How often the teacher's pass reports how far it is: every this share of a split's examples.
PROGRESS_STEP = 0.25


@dataclass
class TeacherOutputs:
    """The teacher's logits on each split of the run's data (an empty split has none), in the examples' order."""

    logits: dict[str, np.ndarray]     # split -> float32 (examples, labels)
    key: str                          # teacher_key of the teacher and data they were computed for
    seconds: float                    # the teacher's pass (0 when read back)
    from_cache: bool                  # read back from the run's state folder (a resumed run)


def teacher_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / STATE_DIR / TEACHER_FILE


def teacher_key(teacher_dir: str | os.PathLike, record: dict[str, Any], fingerprint: str) -> str:
    """What the cached logits depend on: which finished teacher (its folder, when it finished, its weights and
    labels) and which data (the fingerprint of every split)."""
    identity = {"run": str(Path(teacher_dir).resolve()), "finished_at": record.get("finished_at"),
                "files": record.get("files"), "labels": record.get("labels"), "data": fingerprint}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def finished_teacher(teacher_dir: str | os.PathLike) -> dict[str, Any]:
    """The record of the teacher in ``teacher_dir``, which must have finished with finite weights.

    Raises:
        zoo.errors.InvalidInputError: one line naming --teacher and the way on.
    """
    try:
        return read_finished_record(teacher_dir).to_dict()
    except InvalidInputError as exc:
        raise InvalidInputError(f"--teacher {teacher_dir}: {exc}") from None


def read_teacher(teacher_dir: str | os.PathLike, splits: DataSplits) -> dict[str, Any]:
    """The record of a teacher fit for ``splits``: a finished run of the same task, labels (in the same order) and
    multi-label setting.

    Raises:
        zoo.errors.InvalidInputError: one line naming --teacher and what differs.
    """
    where = f"--teacher {teacher_dir}"
    record = finished_teacher(teacher_dir)
    if record.get("task") != splits.task:
        raise InvalidInputError(f"{where}: the teacher is a {record.get('task')} model and the data is "
                                f"{splits.task}; give a teacher of the same task")
    if bool(record.get("multi_label")) != splits.multi_label:
        kinds = {True: "multi-label", False: "single-label"}
        raise InvalidInputError(f"{where}: the teacher is {kinds[bool(record.get('multi_label'))]} and the data is "
                                f"{kinds[splits.multi_label]}; give a teacher trained the same way")
    labels = list(record.get("labels") or [])
    if labels != list(splits.label_names):
        if sorted(labels) == sorted(splits.label_names):
            why = f"the same labels in another order ({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''})"
        else:
            missing = [label for label in splits.label_names if label not in labels][:3]
            extra = [label for label in labels if label not in splits.label_names][:3]
            why = "other labels (" + "; ".join(part for part in (
                f"the data's {', '.join(missing)} missing" if missing else "",
                f"{', '.join(extra)} not in the data" if extra else "") if part) + ")"
        raise InvalidInputError(f"{where}: the teacher was trained on {why}; give a teacher trained on these "
                                "labels")
    return record


def teacher_outputs(teacher_dir: str | os.PathLike, splits: DataSplits, *, run_dir: str | os.PathLike,
                    device, precision: str, batch_size: int, num_workers: int = 0,
                    reporter: Reporter | None = None, write: bool = True) -> tuple[TeacherOutputs, dict[str, Any]]:
    """The teacher's logits on every split of ``splits`` and its record: read back from the run's state folder when
    computed there for this teacher and data, else computed now (in ``precision`` on ``device``) and, with
    ``write`` (the process that writes the run), kept there.

    Raises:
        zoo.errors.InvalidInputError: the teacher is not (or no longer) fit for the data (:func:`read_teacher`).
    """
    reporter = reporter or Reporter()
    record = read_teacher(teacher_dir, splits)
    key = teacher_key(teacher_dir, record, splits.fingerprint)
    path = teacher_path(run_dir)
    cached = _read(path, key)
    if cached is not None:
        reporter.message(f"teacher logits: read back from {STATE_DIR}/{TEACHER_FILE} (the teacher is not run again)")
        return TeacherOutputs(cached, key, 0.0, True), record
    started = time.perf_counter()
    classifier = load_saved(teacher_dir, get_plugin_manager().families)
    classifier.model.to(device).eval()
    max_seconds = (record.get("config") or {}).get("max_seconds", 10.0)
    logits: dict[str, np.ndarray] = {}
    try:
        for split in SPLITS:
            examples = getattr(splits, split)
            if not examples:
                continue
            reporter.message(f"teacher logits: {split} ({len(examples)} examples)")
            dataset = ExampleDataset(examples, classifier, train=False, max_seconds=max_seconds,
                                     num_labels=splits.num_labels, multi_label=splits.multi_label)
            _, logits[split] = collect_outputs(classifier.forward, dataset, batch_size=batch_size, device=device,
                                               collate=make_collate(classifier, splits.multi_label),
                                               num_workers=num_workers, autocast=autocast(precision, device),
                                               on_batch=_progress(split, len(examples), reporter))
    finally:
        classifier.model.to("cpu")   # the teacher's memory goes back before the student trains
    outputs = TeacherOutputs(logits, key, round(time.perf_counter() - started, 2), False)
    if write:
        _write(path, outputs)
    return outputs, record


def teacher_metrics(outputs: TeacherOutputs, splits: DataSplits) -> dict[str, dict[str, float] | None]:
    """The teacher's scalar metrics on the validation and test splits (None without a test split)."""
    scored: dict[str, dict[str, float] | None] = {}
    for split in ("val", "test"):
        examples = getattr(splits, split)
        if not examples or split not in outputs.logits:
            scored[split] = None
            continue
        scored[split] = headline(compute_metrics(split_targets(examples, splits.num_labels, splits.multi_label),
                                                 outputs.logits[split], splits.label_names,
                                                 multi_label=splits.multi_label))
    return scored


def split_targets(examples, num_labels: int, multi_label: bool) -> np.ndarray:
    """The targets of ``examples`` as the metrics take them: class indices, or multi-hot rows."""
    if not multi_label:
        return np.array([example.labels[0] for example in examples], dtype=np.int64)
    targets = np.zeros((len(examples), num_labels), dtype=np.float32)
    for row, example in enumerate(examples):
        targets[row, list(example.labels)] = 1.0
    return targets


def discard_teacher_outputs(run_dir: str | os.PathLike) -> None:
    """Drop the cached logits: a finished run needs them no more."""
    teacher_path(run_dir).unlink(missing_ok=True)


def _progress(split: str, total: int, reporter: Reporter):
    """A collect_outputs callback that reports every PROGRESS_STEP of the examples."""
    done, next_report = 0, PROGRESS_STEP

    def on_batch(count: int) -> None:
        nonlocal done, next_report
        done += count
        if done < total and done >= next_report * total:
            reporter.message(f"teacher logits: {split} {done}/{total}")
            while next_report * total <= done:
                next_report += PROGRESS_STEP

    return on_batch


def _read(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The logits cached at ``path`` for ``key``; None when absent, damaged or computed for another teacher or
    data."""
    if not path.is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as stored:
            if (stored.metadata() or {}).get("key") != key:
                return None
            return {split: stored.get_tensor(split) for split in stored.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError):
        return None


def _write(path: Path, outputs: TeacherOutputs) -> None:
    """Write the logits atomically (a kill mid-write leaves no file that looks whole)."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({split: np.ascontiguousarray(values, dtype=np.float32) for split, values in outputs.logits.items()},
              str(tmp), metadata={"key": outputs.key})
    os.replace(tmp, path)
