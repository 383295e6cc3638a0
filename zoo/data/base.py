"""The records every reader returns: examples with label indices, grouped into train / val / test splits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Example:
    """One labelled example.

    ``input`` is what the family's preprocessing takes: an absolute :class:`~pathlib.Path` for image and audio
    files, a ``str`` for text (or an in-memory object for data from the Hugging Face ``datasets`` library).
    """

    input: Any
    labels: tuple[int, ...]          # indices into DataSplits.label_names; exactly one unless multi-label
    id: str                          # where it came from, for messages: a relative path or "file.csv:row 12"


@dataclass
class DataSplits:
    """A labelled dataset split for training, with everything a run records about it."""

    task: str
    source: str                                       # what the person passed (path or hf:NAME[:config])
    label_names: list[str]
    multi_label: bool
    train: list[Example]
    val: list[Example]
    test: list[Example] = field(default_factory=list)
    split: dict[str, Any] = field(default_factory=dict)      # how val/test were obtained (given, or stratified)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"item", "reason"} for each --skip-bad skip
    fingerprint: str = ""                             # hex digest of every split's content and labels
    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # split -> role -> the table column used
    ignored: dict[str, Any] = field(default_factory=dict)  # {"count", "examples"}: class-folder files of other types

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def class_counts(self, split: str = "train") -> dict[str, int]:
        counts = Counter(label for ex in getattr(self, split) for label in ex.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.label_names)}

    def summary(self) -> dict[str, Any]:
        """What a run record keeps about the data (no examples)."""
        return {
            "task": self.task, "source": self.source, "labels": self.label_names, "multi_label": self.multi_label,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "class_counts": {"train": self.class_counts("train"), "val": self.class_counts("val")},
            "split": self.split, "skipped": len(self.skipped), "fingerprint": self.fingerprint,
            "columns": self.columns, "ignored_files": self.ignored or {"count": 0, "examples": []},
        }


def is_path(value: Any) -> bool:
    return isinstance(value, Path)
