"""Datasets from the Hugging Face Hub (``hf:NAME[:config]``), read through the ``datasets`` library when installed.

The input column is found by its feature type (Image, Audio, or a string Value) and the label column by ClassLabel,
whose names keep their order. Examples hold the in-memory value; labels are returned as names so that
``load_data`` treats these splits like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo.data.raw import RawExample, ReadOptions, clean_label
from zoo.data.tables import LABEL_COLUMNS, TEXT_COLUMNS
from zoo.errors import InvalidInputError, one_line

VAL_SPLITS = ("validation", "valid", "val")


@dataclass
class HFData:
    """The splits read from one Hugging Face dataset."""

    splits: dict[str, list[RawExample]]          # "train", and "val"/"test" when present
    split_info: dict[str, str]
    label_names: list[str] | None = None         # ClassLabel order, when the label column has one
    where: dict[str, str] = field(default_factory=dict)   # what to name in messages about each split


def read_hf(source: str, *, input_kind: str, val: str | None, test: str | None, opts: ReadOptions) -> HFData:
    """Load ``source`` (``hf:NAME[:config]``); ``val`` and ``test`` name splits of it instead of the defaults.

    Args:
        source: ``hf:NAME`` or ``hf:NAME:CONFIG``.
        input_kind: "image", "audio" or "text": which feature type the input column has.
        val: the split to validate on; default the first of validation, valid, val present.
        test: the split to test on; default "test" when present.
        opts: column names and the skip policy.

    Raises:
        InvalidInputError: when ``datasets`` is not installed, the dataset cannot be loaded, a split or column is
            missing, or (unless skipping) a training row has no label.
    """
    name, _, config = source.removeprefix("hf:").partition(":")
    if not name:
        raise InvalidInputError(f"{source!r}: name a dataset, as hf:NAME or hf:NAME:CONFIG")
    try:
        import datasets
    except ImportError:
        raise InvalidInputError(
            f"reading {source} needs the Hugging Face datasets library; install it with: pip install datasets"
        ) from None
    shown = f"{name!r}" + (f" (config {config!r})" if config else "")
    try:
        loaded = datasets.load_dataset(name, config or None)
    except Exception as exc:  # offline, unknown name, missing config, ...: the library's own types vary by version
        raise InvalidInputError(
            f"could not load Hugging Face dataset {shown}: {type(exc).__name__}: {one_line(exc)}. Check the name "
            "and config; offline, the dataset must already be in the Hugging Face cache"
        ) from None
    available = list(loaded)
    chosen = {"train": "train",
              "val": val or next((s for s in VAL_SPLITS if s in available), None),
              "test": test or ("test" if "test" in available else None)}
    for role, split in chosen.items():
        if split is not None and split not in available:
            raise InvalidInputError(f"Hugging Face dataset {shown} has no {split!r} split for {role}; "
                                    f"its splits are: {', '.join(available)}")
    features = loaded["train"].features
    input_col = opts.input_col or _input_column(features, input_kind, datasets)
    label_col = opts.label_col or _label_column(features, datasets)
    for role, column in (("input", input_col), ("label", label_col)):
        if column is None or column not in features:
            raise InvalidInputError(
                f"Hugging Face dataset {shown}: no {role} column {'found' if column is None else repr(column)}; "
                f"its columns are: {', '.join(features)}. Name it with --{role}-col"
            )
    names = _class_names(features[label_col], datasets)
    data = HFData({}, {}, names)
    for role, split in chosen.items():
        if split is None:
            continue   # load_data records "none" for a missing test split and makes a stratified val split
        examples = _read_split(loaded[split], f"{name}/{split}", input_col, label_col, names, opts,
                               report_unlabelled=role == "train", input_kind=input_kind)
        if role != "train" and not examples:
            # Benchmark test splits often hide their labels (-1); such a split cannot be scored.
            data.split_info[role] = f"none ({split!r} split has no labels)"
            continue
        data.splits[role] = examples
        data.where[role] = f"hf:{name} split {split!r}"
        opts.columns[data.where[role]] = {input_kind: input_col, "label": label_col}
        if role != "train":
            data.split_info[role] = f"given: hf split {split!r}"
    return data


def _read_split(rows: Any, prefix: str, input_col: str, label_col: str, names: list[str] | None,
                opts: ReadOptions, *, report_unlabelled: bool, input_kind: str) -> list[RawExample]:
    """The labelled rows of one split; unlabelled ones are reported in training and dropped quietly elsewhere.

    Decoded audio (a dict with an ``array``) must be non-empty and finite, as audio files must be.
    """
    from zoo.audio import samples_problem

    examples = []
    for number, (value, raw) in enumerate(zip(rows[input_col], rows[label_col], strict=True), 1):
        item = f"{prefix}:row {number}"
        label = _label_name(raw, names)
        if label is None:
            if report_unlabelled:
                opts.bad(item, f"hf:{item}", f"the label is empty (column {label_col!r})")
            continue
        if input_kind == "audio" and isinstance(value, dict) and value.get("array") is not None:
            reason = samples_problem(value["array"], value.get("sampling_rate") or 1)
            if reason:
                opts.bad(item, f"hf:{item}", f"{reason} (column {input_col!r})")
                continue
        examples.append(RawExample(value, label, item, f"hf:{item}"))
    return examples


def _label_name(raw: Any, names: list[str] | None) -> str | list[str] | None:
    if isinstance(raw, list):
        parts = [_label_name(part, names) for part in raw]
        return [p for p in parts if isinstance(p, str)] or None
    if names is not None and isinstance(raw, int) and not isinstance(raw, bool):
        return names[raw] if 0 <= raw < len(names) else None   # -1 marks an unlabelled row
    try:
        return clean_label(raw)  # type: ignore[return-value]
    except ValueError:
        return None


def _input_column(features: dict[str, Any], kind: str, datasets: Any) -> str | None:
    if kind == "image":
        return next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
    if kind == "audio":
        return next((c for c, f in features.items() if isinstance(f, datasets.Audio)), None)
    strings = [c for c, f in features.items()
               if isinstance(f, datasets.Value) and f.dtype in ("string", "large_string")]
    return next((c for c in TEXT_COLUMNS if c in strings), strings[0] if strings else None)


def _label_column(features: dict[str, Any], datasets: Any) -> str | None:
    for column, feature in features.items():
        if _class_names(feature, datasets) is not None:
            return column
    return next((c for c in LABEL_COLUMNS if c in features), None)


def _class_names(feature: Any, datasets: Any) -> list[str] | None:
    """The names of a ClassLabel feature, or of a sequence of them (multi-label); None for other features."""
    inner = getattr(feature, "feature", None)  # Sequence / List of ClassLabel
    for candidate in (feature, inner):
        if isinstance(candidate, datasets.ClassLabel):
            return list(candidate.names)
    return None
