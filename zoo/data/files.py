"""Image and audio files: folders of class subfolders, CSV manifests, and the check that each file decodes.

Every file is decoded in full once here (``zoo.images``, ``zoo.audio``), so that a truncated, oversized or
non-finite file is refused (or skipped with ``--skip-bad``) before training starts rather than failing mid-run.
Examples hold the file's absolute path; decoding for training happens later, in the family's preprocessing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zoo.data.raw import RawExample, ReadOptions
from zoo.data.tables import LABEL_COLUMNS, PATH_COLUMNS, find_column, read_table, row_label
from zoo.errors import InvalidInputError
from zoo.images import image_problem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
VAL_FOLDERS = ("val", "valid", "validation")


@dataclass(frozen=True)
class MediaKind:
    """What a task's files are: the extensions a folder reader picks up and how one file is checked."""

    name: str                                   # "image" or "audio", for messages
    extensions: tuple[str, ...]
    check: Callable[[Path], str | None]         # None when the file decodes, else the reason it does not


def check_image(path: Path) -> str | None:
    """None when every pixel of ``path`` decodes within the size cap (and is finite), else why not."""
    return image_problem(path)


def check_audio(path: Path) -> str | None:
    """None when every sample of ``path`` decodes and is finite, else why not; decoded in blocks."""
    from zoo.audio import audio_problem

    return audio_problem(path)


MEDIA = {
    "image": MediaKind("image", IMAGE_EXTENSIONS, check_image),
    "audio": MediaKind("audio", AUDIO_EXTENSIONS, check_audio),
}


def split_folders(root: Path) -> dict[str, Path] | None:
    """The ``train/``, ``val/`` (or ``valid/``, ``validation/``) and ``test/`` folders of ``root``.

    Returns:
        A dict with "train" and whichever of "val" and "test" exist, or None when ``root`` has no ``train/`` (then
        its subfolders are the classes). Names match ignoring case.
    """
    subdirs: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            subdirs.setdefault(child.name.lower(), child)
    if "train" not in subdirs:
        return None
    found = {"train": subdirs["train"]}
    val = next((subdirs[name] for name in VAL_FOLDERS if name in subdirs), None)
    if val is not None:
        found["val"] = val
    if "test" in subdirs:
        found["test"] = subdirs["test"]
    return found


def read_class_folder(folder: Path, id_root: Path, kind: MediaKind, opts: ReadOptions) -> list[RawExample]:
    """Every file with one of ``kind``'s extensions under ``folder/<class>/`` (at any depth), checked.

    Args:
        folder: holds one subfolder per class, named after it.
        id_root: ids are paths relative to this folder.
        kind: which files to pick up and how to check them.
        opts: decides whether a bad file is skipped or refused.

    Returns:
        The examples in sorted path order.

    Raises:
        InvalidInputError: when ``folder`` has no class subfolders or no files in them, or (unless skipping) a file
            does not decode.
    """
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = sum(1 for p in folder.iterdir() if p.suffix.lower() in kind.extensions)
        found = f" (it holds {loose} {kind.name} file(s) directly)" if loose else ""
        raise InvalidInputError(
            f"{folder}: no class subfolders{found}; put each class's files in a subfolder named after the class, "
            f"e.g. {folder / 'CLASS' / ('file' + kind.extensions[0])}"
        )
    files = []
    for class_dir in classes:
        found, ignored = _files_under(class_dir, kind.extensions)
        files.extend((class_dir, path) for path in found)
        for path in ignored:
            opts.ignore(path.relative_to(id_root).as_posix())
    if not files:
        raise InvalidInputError(
            f"{folder}: no {kind.name} files ({', '.join(kind.extensions)}) in its class subfolders "
            f"({', '.join(p.name for p in classes[:5])}{', ...' if len(classes) > 5 else ''})"
        )
    examples: list[RawExample] = []
    for class_dir, path in files:
        item = path.relative_to(id_root).as_posix()
        reason = kind.check(path)
        if reason:
            opts.bad(item, str(path), reason)
            continue
        examples.append(RawExample(Path(os.path.abspath(path)), class_dir.name, item, str(path)))
    return examples


def read_manifest(path: Path, kind: MediaKind, opts: ReadOptions) -> list[RawExample]:
    """The examples of a manifest table: a file path column (relative to the table's folder) and a label column.

    Files are checked by content, whatever their extension, since the person listed them on purpose.

    Raises:
        InvalidInputError: for an unreadable table, a missing column, or (unless skipping) an empty cell or a file
            that is missing or does not decode.
    """
    table = read_table(path)
    if not table.rows:
        raise InvalidInputError(f"{path}: no data rows")
    path_col = find_column(table, opts.input_col, PATH_COLUMNS, "file path", "--input-col")
    label_col = find_column(table, opts.label_col, LABEL_COLUMNS, "label", "--label-col")
    opts.columns[str(path)] = {"path": path_col, "label": label_col}
    examples: list[RawExample] = []
    table_name, shown = path.name, str(path)
    for number, row in enumerate(table.rows, 1):
        item, where = f"{table_name}:row {number}", f"{shown} row {number}"
        value = row.get(path_col)
        name = str(value).strip() if value is not None else ""
        if not name:
            opts.bad(item, where, f"the file path is empty (column {path_col!r})")
            continue
        label = row_label(row, label_col, item, where, opts)
        if label is None:
            continue
        file = path.parent / name
        reason = f"no such file: {file}" if not file.is_file() else kind.check(file)
        if reason:
            opts.bad(name, where, reason)
            continue
        examples.append(RawExample(Path(os.path.abspath(file)), label, Path(name).as_posix(), where))
    return examples


def _files_under(folder: Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """The files under ``folder`` with one of ``extensions``, and those with another (hidden files are neither)."""
    found, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath)
        for name in sorted(filenames):
            if not name.startswith("."):
                (found if os.path.splitext(name)[1].lower() in extensions else ignored).append(base / name)
    return found, ignored
