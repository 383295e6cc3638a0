"""``load_data``: read a labelled dataset for ``zoo adapt`` into train / val / test splits.

The format readers (``tables``, ``files``, ``hf``) return examples with label *names*; this module picks the label
order, turns names into indices, checks the splits against each other, makes a stratified validation split when
none is given, and fingerprints the result.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.data.base import DataSplits, Example
from zoo.data.files import MEDIA, read_class_folder, read_manifest, split_folders
from zoo.data.hf import read_hf
from zoo.data.raw import RawExample, ReadOptions
from zoo.data.split import fingerprint, sort_label_names, stratified_split
from zoo.data.tables import TABLE_FORMATS, is_table, read_text_table
from zoo.errors import InvalidInputError
from zoo.tasks import get_task

EVAL_SPLITS = ("val", "test")


def load_data(source: str | os.PathLike[str], *, task: str, val: str | os.PathLike[str] | None = None,
              test: str | os.PathLike[str] | None = None, input_col: str | None = None,
              label_col: str | None = None, label_sep: str = "|", multi_label: bool | None = None,
              val_fraction: float = 0.1, seed: int = 0, skip_bad: bool = False) -> DataSplits:
    """Read a labelled dataset for ``task`` and split it into train, val and test.

    Sources: for image-cls and audio-cls a folder of class subfolders (optionally inside ``train/``, ``val/`` (or
    ``valid/``, ``validation/``) and ``test/``) or a CSV/TSV/JSONL manifest of file paths and labels; for text-cls a
    CSV, TSV or JSONL file; for any task ``hf:NAME[:config]``, a Hugging Face dataset (``val``/``test`` then name
    its splits). Without a validation split, a stratified ``val_fraction`` of train becomes one.

    Args:
        source: the training data (or the whole dataset, for a folder with ``train/``).
        task: a task name, e.g. "image-cls".
        val: validation data read like ``source``; overrides a ``val/`` folder.
        test: test data read like ``source``; overrides a ``test/`` folder.
        input_col: the text or file path column of a table; detected when None.
        label_col: the label column of a table; detected when None.
        label_sep: separates labels in a multi-label cell, e.g. "pos|movie".
        multi_label: whether an example may have several labels; None means yes when any label is a JSON list.
        val_fraction: the share of each class moved to validation when no validation data is given, in [0, 1).
        seed: seeds that split.
        skip_bad: skip (and record in ``DataSplits.skipped``) files that do not decode in full (truncated, over
            the pixel cap, empty, or holding NaN/infinite values) and rows with an empty or malformed cell, instead
            of refusing the data.

    Returns:
        The splits, label names (sorted; ClassLabel order for ``hf:``), how val/test were obtained, the skipped
        items, the table columns used, the class-folder files ignored for their extension, and a fingerprint of
        the examples and labels.

    Raises:
        zoo.errors.UnknownTaskError: for an unknown task.
        zoo.errors.InvalidInputError: naming the file, for a missing source, an unknown file type, a file that is
            not UTF-8, a missing column, a bad file or row (unless ``skip_bad``), an empty split, a single class in
            train, or val/test labels unseen in training.
    """
    input_kind = get_task(task).input_kind
    if not 0 <= val_fraction < 1:
        raise InvalidInputError(f"val_fraction must be at least 0 and below 1, not {val_fraction}")
    if not label_sep:
        raise InvalidInputError("label_sep must not be empty")
    opts = ReadOptions(input_col, label_col, label_sep, multi_label, skip_bad)
    source = os.fspath(source)
    val, test = (None if p is None else os.fspath(p) for p in (val, test))
    label_names: list[str] | None = None
    if source.startswith("hf:"):
        hf = read_hf(source, input_kind=input_kind, val=val, test=test, opts=opts)
        raw, where, split_info, label_names = hf.splits, hf.where, hf.split_info, hf.label_names
    else:
        raw, where, split_info = _read_local(source, task, input_kind, val, test, opts)
    multi = opts.multi_label if opts.multi_label is not None else \
        any(isinstance(ex.label, list) for examples in raw.values() for ex in examples)
    named = {role: _name_tuples(examples, multi, opts) for role, examples in raw.items()}
    for role, examples in named.items():
        if not examples:
            skipped = f" ({len(opts.skipped)} bad items skipped)" if opts.skipped else ""
            raise InvalidInputError(f"{where[role]}: no {role} examples found{skipped}")
    train_names = {name for _, names in named["train"] for name in names}
    if len(train_names) < 2:
        raise InvalidInputError(
            f"{where['train']}: the training data has only one class ({', '.join(map(repr, train_names))}); "
            "classification needs at least two"
        )
    # ClassLabel names (hf:) are the declared classes, in their order; otherwise the classes are those of train.
    label_names = label_names or sort_label_names(train_names)
    index = {name: i for i, name in enumerate(label_names)}
    for role in EVAL_SPLITS:
        unseen = sorted({name for _, names in named.get(role, ()) for name in names} - index.keys())
        if unseen:
            raise InvalidInputError(
                f"{where[role]}: {role} labels not seen in training: {_some(unseen)} "
                f"(training labels: {_some(sorted(train_names))})"
            )
    splits = {role: [Example(ex.input, tuple(sorted({index[n] for n in names})), ex.id) for ex, names in pairs]
              for role, pairs in named.items()}
    if "val" not in splits:
        splits["train"], splits["val"] = stratified_split(splits["train"], val_fraction, seed)
        split_info["val"] = f"stratified {val_fraction * 100:g}% of train, seed {seed}" if val_fraction else "none"
    split_info.setdefault("test", "none")
    ordered = [(role, splits.get(role, [])) for role in ("train", *EVAL_SPLITS)]
    return DataSplits(
        task=task, source=source, label_names=label_names, multi_label=multi,
        train=ordered[0][1], val=ordered[1][1], test=ordered[2][1],
        split={role: split_info[role] for role in EVAL_SPLITS}, skipped=opts.skipped,
        fingerprint=fingerprint(ordered, label_names),
        columns={role: opts.columns[place] for role, place in where.items() if place in opts.columns},
        ignored={"count": opts.ignored, "examples": opts.ignored_examples},
    )


def load_scored(source: str | os.PathLike[str], *, task: str, labels: list[str],
                multi_label: bool) -> tuple[list[Example], DataSplits]:
    """The examples of a labelled set to score a model on, with their labels as indices into the model's
    ``labels``: its test split (a test/ folder, an hf: test split), or all of it. Also the data as read.

    Raises:
        zoo.errors.InvalidInputError: unreadable data, or labels the model was not trained on.
    """
    data = load_data(source, task=task, val_fraction=0.0, multi_label=multi_label or None)
    unknown = sorted(set(data.label_names) - set(labels))
    if unknown:
        raise InvalidInputError(f"{source}: labels the model was not trained on: {', '.join(unknown)}")
    remap = [labels.index(name) for name in data.label_names]
    scored = data.test or (data.train + data.val)
    return [Example(ex.input, tuple(remap[i] for i in ex.labels), ex.id) for ex in scored], data


def _read_local(source: str, task: str, input_kind: str, val: str | None, test: str | None,
                opts: ReadOptions) -> tuple[dict[str, list[RawExample]], dict[str, str], dict[str, str]]:
    """Read a local source and its val/test data; returns examples, where each split came from, and how."""
    root = _existing(source)
    layout = split_folders(root) if root.is_dir() and input_kind != "text" else None
    train_path = layout["train"] if layout else root
    raw = {"train": _read_path(train_path, root, task, input_kind, opts)}
    where = {"train": str(train_path)}
    split_info: dict[str, str] = {}
    for role, given in (("val", val), ("test", test)):
        if given is not None:
            path = _existing(given)
            raw[role] = _read_path(path, path if path.is_dir() else path.parent, task, input_kind, opts)
            where[role], split_info[role] = str(path), f"given: {given}"
        elif layout and role in layout:
            raw[role] = _read_path(layout[role], root, task, input_kind, opts)
            where[role], split_info[role] = str(layout[role]), f"given: {layout[role]}"
    return raw, where, split_info


def _read_path(path: Path, id_root: Path, task: str, input_kind: str, opts: ReadOptions) -> list[RawExample]:
    """The examples of one file or folder, by task and file type."""
    if input_kind == "text":
        if path.is_dir():
            raise InvalidInputError(f"{path}: {task} reads a .csv, .tsv or .jsonl file, not a folder")
        if not is_table(path):
            raise InvalidInputError(f"{path}: unknown file type {path.suffix!r} for {task}; "
                                    f"use one of {', '.join(TABLE_FORMATS)}")
        return read_text_table(path, opts)
    kind = MEDIA[input_kind]
    if path.is_dir():
        return read_class_folder(path, id_root, kind, opts)
    if is_table(path):
        return read_manifest(path, kind, opts)
    raise InvalidInputError(
        f"{path}: unknown file type {path.suffix!r} for {task}; give a folder of class subfolders or a "
        f"{', '.join(TABLE_FORMATS)} manifest with a file path column and a label column"
    )


def _name_tuples(examples: list[RawExample], multi: bool,
                 opts: ReadOptions) -> list[tuple[RawExample, tuple[str, ...]]]:
    """Each example with its label names: split on ``label_sep`` when multi-label, one name otherwise."""
    pairs = []
    for ex in examples:
        label = ex.label
        if not multi:
            if isinstance(label, list) and len(label) > 1:
                raise InvalidInputError(
                    f"{ex.where}: {len(label)} labels {label} in a single-label dataset; pass --multi-label "
                    "(multi_label=True) to train a multi-label classifier"
                )
            pairs.append((ex, (label[0] if isinstance(label, list) else label,)))
            continue
        parts = label if isinstance(label, list) else label.split(opts.label_sep)
        names = tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))
        if not names:
            opts.bad(ex.id, ex.where, "the label is empty")
            continue
        pairs.append((ex, names))
    return pairs


def _existing(given: str) -> Path:
    path = Path(given).expanduser()
    if not path.exists():
        raise InvalidInputError(f"{given}: no such file or folder")
    return path


def _some(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(map(repr, names[:limit]))
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
