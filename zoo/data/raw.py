"""What the format readers hand back before labels become indices, and the options every reader shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo.errors import InvalidInputError

# A label as read: one name, or a list of names (a JSON list, or a Hugging Face sequence of class labels).
RawLabel = str | list[str]
IGNORED_EXAMPLES = 5   # ignored files named in the data summary; the rest are only counted


@dataclass(slots=True)
class RawExample:
    """One example as a reader found it; ``load_data`` turns the label into indices once all splits are read."""

    input: Any
    label: RawLabel
    id: str           # becomes Example.id
    where: str        # the file (and row) to name in a message about this example


@dataclass
class ReadOptions:
    """The reader options of ``load_data`` plus what the readers report: skipped items, columns, ignored files."""

    input_col: str | None = None
    label_col: str | None = None
    label_sep: str = "|"
    multi_label: bool | None = None
    skip_bad: bool = False
    skipped: list[dict[str, str]] = field(default_factory=list)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # where (a file, an hf split) -> role -> column
    ignored: int = 0                                       # files in class folders left out for their extension
    ignored_examples: list[str] = field(default_factory=list)   # the first IGNORED_EXAMPLES of them

    def ignore(self, item: str) -> None:
        """Count a file left out because of its extension, naming the first few."""
        self.ignored += 1
        if len(self.ignored_examples) < IGNORED_EXAMPLES:
            self.ignored_examples.append(item)

    def bad(self, item: str, where: str, reason: str) -> None:
        """Record a bad item when skipping them, otherwise refuse the data.

        Args:
            item: the example's id, kept in ``DataSplits.skipped``.
            where: the file (and row) the message names.
            reason: what is wrong, one line.

        Raises:
            InvalidInputError: unless ``skip_bad`` is set.
        """
        if not self.skip_bad:
            raise InvalidInputError(f"{where}: {reason}. Fix or remove it, or pass --skip-bad to skip bad items.")
        self.skipped.append({"item": item, "reason": reason})


def clean_label(value: Any) -> RawLabel | None:
    """A label cell or JSON value as a stripped name or list of names; ``None`` when it is empty.

    Raises:
        ValueError: for a value that cannot be a label (an object, a nested list); the message says which.
    """
    if value is None:
        return None
    if isinstance(value, list):
        names = [clean_label(part) for part in value]
        if any(isinstance(name, list) for name in names):
            raise ValueError("the label is a nested list")
        return [name for name in names if name] or None  # type: ignore[misc]
    if isinstance(value, bool):   # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value).strip() or None
    raise ValueError(f"the label is a JSON {type(value).__name__}, not a name or a list of names")
