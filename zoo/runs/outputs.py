"""A finished run's validation outputs: the logits its saved model gives each validation example, kept beside the
model so that what combines runs afterwards (Caruana's ensemble selection, a soup's first ranking) reads them in
seconds instead of running every model again.

The file is ``RUN/outputs/validation.safetensors``: ``logits`` (float32, examples x labels) and ``targets`` (the
label index of each example, or the multi-hot rows of a multi-label task), with the label names and the
examples' key in its metadata. The key is a digest of which examples, in which order, with which labels: two runs'
outputs may be compared row by row only when their keys are equal. It is not part of what `zoo push` publishes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import InvalidInputError

if TYPE_CHECKING:   # numpy is imported where it is used: `zoo push` names OUTPUTS_DIR without it
    import numpy as np

OUTPUTS_DIR = "outputs"
VALIDATION_FILE = "validation.safetensors"
RECORD_KEY = "validation_outputs"   # the run record's section that names the file and its key


@dataclass
class ValidationOutputs:
    """One run's logits on its validation examples, in the examples' order."""

    logits: np.ndarray                # float32 (examples, labels)
    targets: np.ndarray               # int64 (examples,), or float32 (examples, labels) when multi-label
    labels: list[str]
    key: str                          # examples_key of the examples scored

    @property
    def multi_label(self) -> bool:
        return self.targets.ndim == 2

    def __len__(self) -> int:
        return len(self.logits)


def examples_key(examples: Sequence[Any], label_names: Sequence[str]) -> str:
    """A digest of which examples (by where they came from and what they hold), in which order, with which labels:
    equal keys mean the same validation set."""
    digest = hashlib.sha256(json.dumps(list(label_names)).encode())
    for example in examples:
        held = example.input if isinstance(example.input, (str, os.PathLike)) else ""
        digest.update(json.dumps([example.id, str(held), list(example.labels)]).encode())
    return digest.hexdigest()


def validation_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / OUTPUTS_DIR / VALIDATION_FILE


def write_validation_outputs(run_dir: str | os.PathLike, *, logits: np.ndarray, targets: np.ndarray,
                             examples: Sequence[Any] | None = None, label_names: Sequence[str],
                             key: str | None = None) -> dict[str, Any]:
    """Write the validation outputs atomically; returns the record's section (file, examples, key). The key is
    that of ``examples``, or ``key`` as given: what combines runs' stored outputs scores their examples without
    holding them."""
    import numpy as np
    from safetensors.numpy import save_file

    path = validation_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if key is None:
        key = examples_key(examples or (), label_names)
    targets = np.asarray(targets)
    targets = targets.astype(np.float32) if targets.ndim == 2 else targets.astype(np.int64)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"logits": np.ascontiguousarray(logits, dtype=np.float32), "targets": np.ascontiguousarray(targets)},
              str(tmp), metadata={"key": key, "labels": json.dumps(list(label_names))})
    os.replace(tmp, path)
    return {"file": str(path.relative_to(run_dir)), "examples": len(logits), "key": key}


def read_validation_outputs(run_dir: str | os.PathLike) -> ValidationOutputs:
    """The validation outputs a finished run stored.

    Raises:
        zoo.errors.InvalidInputError: naming the run, when it has none (a run from before they were kept) or the
            file is damaged.
    """
    from safetensors import SafetensorError, safe_open

    path = validation_path(run_dir)
    if not path.is_file():
        raise InvalidInputError(f"{run_dir}: the run kept no validation outputs ({OUTPUTS_DIR}/{VALIDATION_FILE}); "
                                "give --val DATA so that each model is scored on it")
    try:
        with safe_open(str(path), framework="numpy") as stored:
            metadata = stored.metadata() or {}
            logits, targets = stored.get_tensor("logits"), stored.get_tensor("targets")
        labels = json.loads(metadata["labels"])
        key = metadata["key"]
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise InvalidInputError(f"{path}: unreadable validation outputs ({exc}); give --val DATA so that each "
                                "model is scored on it") from exc
    return ValidationOutputs(logits=logits, targets=targets, labels=labels, key=key)
