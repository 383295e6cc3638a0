"""Tables: CSV, TSV and JSON-lines files, read with the ``csv`` and ``json`` modules, and their text-cls reader.

A table is a list of rows (dicts keyed by column name). Row numbers in messages and ids are 1-based data rows:
the CSV header and blank lines do not count.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.data.raw import RawExample, ReadOptions, clean_label
from zoo.errors import InvalidInputError, one_line

TEXT_COLUMNS = ("text", "sentence", "content", "review", "body", "utterance", "input")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "intent")
PATH_COLUMNS = ("path", "file", "filename", "filepath", "file_path", "image", "image_path", "img", "audio",
                "audio_path")
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
# The most characters one row may hold (all its cells, or its JSON line): 16 MiB of plain text. Far past what any
# tokenizer keeps (it truncates), yet it stops a missing closing quote from swallowing the rest of a large file
# into one cell without a word.
MAX_ROW_CHARS = 16 * 1024 * 1024


@dataclass
class Table:
    """The rows of one table file, in order."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_FORMATS


def read_table(path: Path) -> Table:
    """Read a ``.csv``, ``.tsv`` or ``.jsonl``/``.json`` file as UTF-8 (a BOM is accepted).

    A ``.json`` file may hold JSON lines or one array of objects.

    Raises:
        InvalidInputError: naming the file, when it cannot be read, is not UTF-8, is malformed, or has an unknown
            suffix.
    """
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInputError(f"{path}: unknown table type {path.suffix!r}; use .csv, .tsv or .jsonl")
    text = _read_utf8(path)
    if fmt == "jsonl":
        return _parse_json(path, text)
    # TSV uses the csv module's excel-tab dialect: the same quoting rules as CSV, as spreadsheet and pandas exports
    # write it (a field holding a tab, a newline or a leading quote is quoted).
    return _parse_csv(path, text, "excel-tab" if fmt == "tsv" else "excel")


def find_column(table: Table, explicit: str | None, candidates: Sequence[str], role: str, option: str) -> str:
    """The column to use for ``role``: ``explicit`` if given, else the first of ``candidates`` present.

    Names match exactly first, then ignoring case.

    Args:
        table: the table searched.
        explicit: the column the person named, or None to detect it.
        candidates: names tried in order when detecting.
        role: what the column holds, for the message ("text", "label", "file path").
        option: the option that names the column, for the message.

    Returns:
        The column's name as it appears in the table.

    Raises:
        InvalidInputError: naming the file and the columns it has, when no column fits.
    """
    by_lower: dict[str, str] = {}
    for column in table.columns:
        by_lower.setdefault(column.lower(), column)
    has = ", ".join(repr(c) for c in table.columns) or "none"
    if explicit is not None:
        if explicit in table.columns:
            return explicit
        if explicit.lower() in by_lower:
            return by_lower[explicit.lower()]
        raise InvalidInputError(f"{table.path}: no column {explicit!r} for the {role}; its columns are: {has}")
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    raise InvalidInputError(
        f"{table.path}: no {role} column (looked for {', '.join(candidates)}); its columns are: {has}. "
        f"Name the column with {option}."
    )


def read_text_table(path: Path, opts: ReadOptions) -> list[RawExample]:
    """The text-cls examples of a table: one per row, the text as is and the label cleaned.

    Raises:
        InvalidInputError: for an unreadable table, a missing column, or (unless skipping) a row with an empty
            text or label.
    """
    table = read_table(path)
    if not table.rows:
        raise InvalidInputError(f"{path}: no data rows")
    text_col = find_column(table, opts.input_col, TEXT_COLUMNS, "text", "--input-col")
    label_col = find_column(table, opts.label_col, LABEL_COLUMNS, "label", "--label-col")
    opts.columns[str(path)] = {"text": text_col, "label": label_col}
    examples: list[RawExample] = []
    name, shown = path.name, str(path)
    for number, row in enumerate(table.rows, 1):
        item, where = f"{name}:row {number}", f"{shown} row {number}"
        text = row.get(text_col)
        if isinstance(text, int | float) and not isinstance(text, bool):
            text = str(text)  # a JSON number is still a text worth classifying
        if not isinstance(text, str) or not text.strip():
            reason = "the text is empty" if text is None or isinstance(text, str) else \
                f"the text is a JSON {type(text).__name__}, not a string"
            opts.bad(item, where, f"{reason} (column {text_col!r})")
            continue
        label = row_label(row, label_col, item, where, opts)
        if label is not None:
            examples.append(RawExample(text, label, item, where))
    return examples


def row_label(row: dict[str, Any], column: str, item: str, where: str, opts: ReadOptions) -> str | list[str] | None:
    """The cleaned label of a table row, or None after reporting an empty or malformed one to ``opts.bad``."""
    try:
        label = clean_label(row.get(column))
    except ValueError as exc:
        opts.bad(item, where, f"{exc} (column {column!r})")
        return None
    if label is None:
        opts.bad(item, where, f"the label is empty (column {column!r})")
    return label


def _read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read the file ({exc.strerror or one_line(exc)})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(
            f"{path}: not valid UTF-8 (line {line}, byte {exc.start}); re-save the file as UTF-8"
        ) from None


def _parse_csv(path: Path, text: str, dialect: str) -> Table:
    # newline="" keeps line endings inside quoted fields as they are, as the csv module requires.
    reader = csv.reader(io.StringIO(text, newline=""), dialect=dialect)
    rows: list[dict[str, Any]] = []
    try:
        with _csv_field_limit(MAX_ROW_CHARS):
            header = next(reader, None)
            if header is None:
                raise InvalidInputError(f"{path}: the file is empty; it needs a header row naming the columns")
            columns = [name.strip() for name in header]
            for record in reader:
                if not record:
                    continue
                size = sum(map(len, record))
                if size > MAX_ROW_CHARS:
                    raise InvalidInputError(_row_too_long(path, f"row {len(rows) + 1}", size))
                rows.append(dict(zip(columns, record, strict=False)))
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):   # the csv module's only sign of an over-long cell
            raise InvalidInputError(_row_too_long(path, f"row {len(rows) + 1}", None)) from None
        raise InvalidInputError(f"{path}: malformed near line {reader.line_num}: {one_line(exc)}") from None
    return Table(path, columns, rows)


@contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    """Let one CSV cell hold up to ``limit`` characters while parsing, then put the module's limit back.

    The csv module's limit (128 KiB by default) is process-wide; raising it only for the parse keeps other users of
    the module as they were, and it is never lowered below what someone else set.
    """
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, limit))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _row_too_long(path: Path, row: str, size: int | None) -> str:
    """The refusal of a row over MAX_ROW_CHARS; ``size`` is None when the csv module stopped inside one cell."""
    held = f"holds {size:,} characters, more than" if size is not None else "has a cell longer than"
    return (f"{path}: {row} {held} the {MAX_ROW_CHARS:,} characters a row may hold; shorten it, or "
            "check for a quote that is never closed")


def _parse_json(path: Path, text: str) -> Table:
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        numbered = list(enumerate(records, 1))
        what = "item"
    else:
        numbered = []
        # Split on "\n" only: str.splitlines would also break at U+2028, which JSON strings may hold unescaped.
        for number, line in enumerate(text.split("\n"), 1):
            if len(line) > MAX_ROW_CHARS:
                raise InvalidInputError(_row_too_long(path, f"line {number}", len(line)))
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        what = "line"
    columns: dict[str, None] = {}
    rows = []
    for number, record in numbered:
        if not isinstance(record, dict):
            raise InvalidInputError(
                f"{path}: {what} {number} is a JSON {type(record).__name__}; each must be an object such as "
                '{"text": "...", "label": "..."}'
            )
        columns.update(dict.fromkeys(record))
        rows.append(record)
    return Table(path, list(columns), rows)
