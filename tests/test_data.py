"""The data readers of ``zoo adapt``: formats, layouts, splits, multi-label, errors, skipping, fingerprints."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from data_factory import (
    make_audio_folder,
    make_image_folder,
    make_text_csv,
    write_corrupt_audio,
    write_corrupt_image,
    write_image,
    write_manifest,
)

from zoo.data import DataSplits, Example, load_data
from zoo.data.split import sort_label_names, stratified_split
from zoo.errors import InvalidInputError, UnknownTaskError


def write_rows(path: Path, header: list[str], rows: list[list[Any]], delimiter: str = ",",
               encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def all_examples(data: DataSplits) -> list[Example]:
    return data.train + data.val + data.test


# --- every format -----------------------------------------------------------------------------------------------

# name -> builds the dataset in a folder and returns (source, task, expected examples per class)
FORMATS: dict[str, Callable[[Path], tuple[Path, str, dict[str, int]]]] = {
    "image-folder": lambda d: (make_image_folder(d / "img", per_class=6), "image-cls",
                               {"blue": 6, "green": 6, "red": 6}),
    "image-folder-jpg": lambda d: (make_image_folder(d / "img", classes=("cat", "dog"), per_class=5, ext="jpg"),
                                   "image-cls", {"cat": 5, "dog": 5}),
    "image-csv": lambda d: (write_manifest(make_image_folder(d / "img", per_class=4)), "image-cls",
                            {"blue": 4, "green": 4, "red": 4}),
    "audio-folder": lambda d: (make_audio_folder(d / "aud", per_class=4, seconds=0.1, alt_sample_rate=8000),
                               "audio-cls", {"high": 4, "low": 4, "mid": 4}),
    "audio-flac": lambda d: (make_audio_folder(d / "aud", per_class=3, seconds=0.1, fmt="flac"), "audio-cls",
                             {"high": 3, "low": 3, "mid": 3}),
    "audio-csv": lambda d: (write_manifest(make_audio_folder(d / "aud", per_class=3, seconds=0.1),
                                           d / "audio.csv"), "audio-cls", {"high": 3, "low": 3, "mid": 3}),
    "text-csv": lambda d: (make_text_csv(d / "t.csv", per_class=20), "text-cls", {"neg": 20, "pos": 20}),
    "text-tsv": lambda d: (make_text_csv(d / "t.tsv", per_class=20, fmt="tsv"), "text-cls", {"neg": 20, "pos": 20}),
    "text-jsonl": lambda d: (make_text_csv(d / "t.jsonl", per_class=20, fmt="jsonl"), "text-cls",
                             {"neg": 20, "pos": 20}),
    "text-json": lambda d: (make_text_csv(d / "t.json", per_class=20, fmt="jsonl"), "text-cls",
                            {"neg": 20, "pos": 20}),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_with_counts_and_labels(tmp_path, fmt):
    source, task, expected = FORMATS[fmt](tmp_path)
    data = load_data(str(source), task=task)
    assert data.task == task and data.source == str(source)
    assert data.label_names == sorted(expected) and not data.multi_label
    total = Counter({name: data.class_counts("train")[name] + data.class_counts("val")[name]
                     for name in data.label_names})
    assert total == expected
    assert data.test == [] and data.split["test"] == "none"
    assert data.split["val"] == "stratified 10% of train, seed 0"
    for example in all_examples(data):
        assert len(example.labels) == 1 and 0 <= example.labels[0] < data.num_labels
        if task == "text-cls":
            assert isinstance(example.input, str) and example.input.strip()
            assert example.id.startswith(f"{source.name}:row ")
        else:
            assert isinstance(example.input, Path) and example.input.is_absolute() and example.input.is_file()
            assert not Path(example.id).is_absolute() and (source if source.is_dir() else source.parent).joinpath(
                example.id).resolve() == example.input.resolve()
            # the folder (or the manifest's label) names the class
            assert data.label_names[example.labels[0]] == Path(example.id).parent.name
    assert len({ex.id for ex in all_examples(data)}) == sum(expected.values())
    assert len(data.fingerprint) == 64 and data.summary()["sizes"]["train"] == len(data.train)


def test_text_ids_count_data_rows_from_one(tmp_path):
    path = write_rows(tmp_path / "t.csv", ["text", "label"], [["good", "pos"], ["bad", "neg"], ["great", "pos"]])
    data = load_data(path, task="text-cls", val_fraction=0)
    assert [(ex.id, ex.input) for ex in data.train] == [("t.csv:row 1", "good"), ("t.csv:row 2", "bad"),
                                                          ("t.csv:row 3", "great")]


def test_csv_quoting_bom_and_numeric_labels(tmp_path):
    rows = [['a "quoted", multi\nline text', "10"], ["plain", "2"], ["more", "2"], ["x", "10"]]
    path = write_rows(tmp_path / "t.csv", ["text", "label"], rows, encoding="utf-8-sig")
    data = load_data(path, task="text-cls", val_fraction=0)
    assert data.train[0].input == 'a "quoted", multi\nline text'
    assert data.label_names == ["2", "10"]    # integers in numeric order
    assert sort_label_names(["b", "a", "10", "9"]) == ["10", "9", "a", "b"]


def test_json_array_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"text": "good", "label": 1}, {"text": "bad", "label": 0}]))
    data = load_data(path, task="text-cls", val_fraction=0)
    assert data.label_names == ["0", "1"] and [ex.labels for ex in data.train] == [(1,), (0,)]


# --- layouts and given splits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("val_name", ["val", "valid", "validation"])
@pytest.mark.parametrize("task", ["image-cls", "audio-cls"])
def test_train_val_test_folders_are_used_as_given(tmp_path, task, val_name):
    if task == "image-cls":
        root = make_image_folder(tmp_path / "d", per_class=5, layout="splits", eval_per_class=2)
    else:
        root = make_audio_folder(tmp_path / "d", per_class=5, seconds=0.1, layout="splits", eval_per_class=2)
    if val_name != "val":
        (root / "val").rename(root / val_name)
    data = load_data(root, task=task)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 6, 6)
    assert data.split == {"val": f"given: {root / val_name}", "test": f"given: {root / 'test'}"}
    assert all(ex.id.startswith("train/") for ex in data.train)
    assert all(ex.id.startswith(f"{val_name}/") for ex in data.val)
    assert all(ex.id.startswith("test/") for ex in data.test)


def test_val_and_test_paths_override(tmp_path):
    make_text_csv(tmp_path / "train.csv", per_class=10)
    make_text_csv(tmp_path / "val.jsonl", per_class=3, seed=1, fmt="jsonl")
    make_text_csv(tmp_path / "test.tsv", per_class=4, seed=2, fmt="tsv")
    data = load_data(tmp_path / "train.csv", task="text-cls", val=str(tmp_path / "val.jsonl"),
                     test=str(tmp_path / "test.tsv"))
    assert (len(data.train), len(data.val), len(data.test)) == (20, 6, 8)
    assert data.split == {"val": f"given: {tmp_path / 'val.jsonl'}", "test": f"given: {tmp_path / 'test.tsv'}"}
    assert data.val[0].id.startswith("val.jsonl:row ")


def test_val_folder_given_for_flat_images(tmp_path):
    make_image_folder(tmp_path / "train", per_class=4)
    make_image_folder(tmp_path / "val", per_class=2, seed=3)
    data = load_data(tmp_path / "train", task="image-cls", val=tmp_path / "val")
    assert (len(data.train), len(data.val)) == (12, 6) and data.split["test"] == "none"
    assert data.val[0].id == "blue/000.png"


# --- the stratified split ---------------------------------------------------------------------------------------


def _uneven_csv(tmp_path: Path) -> Path:
    sizes = {"a": 20, "b": 7, "c": 2, "d": 1}
    rows = [[f"text {name} {i}", name] for name, n in sizes.items() for i in range(n)]
    return write_rows(tmp_path / "u.csv", ["text", "label"], rows)


@pytest.mark.parametrize(("fraction", "expected"), [
    (0.1, {"a": 2, "b": 1, "c": 1, "d": 0}),
    (0.25, {"a": 5, "b": 2, "c": 1, "d": 0}),
    (0.9, {"a": 18, "b": 6, "c": 1, "d": 0}),   # never the whole class
])
def test_stratified_split_sizes(tmp_path, fraction, expected):
    data = load_data(_uneven_csv(tmp_path), task="text-cls", val_fraction=fraction)
    assert data.class_counts("val") == expected
    assert data.class_counts("train") == {k: n - expected[k] for k, n in {"a": 20, "b": 7, "c": 2, "d": 1}.items()}
    assert data.split["val"] == f"stratified {fraction * 100:g}% of train, seed 0"
    assert not {ex.id for ex in data.train} & {ex.id for ex in data.val}


def test_stratified_split_is_deterministic_and_keeps_order(tmp_path):
    path = _uneven_csv(tmp_path)
    first, again = (load_data(path, task="text-cls", seed=7) for _ in range(2))
    other = load_data(path, task="text-cls", seed=8)
    assert [ex.id for ex in first.val] == [ex.id for ex in again.val]
    assert first.fingerprint == again.fingerprint
    assert {ex.id for ex in first.val} != {ex.id for ex in other.val}
    assert first.fingerprint != other.fingerprint and other.split["val"].endswith("seed 8")
    rows = [int(ex.id.rsplit(" ", 1)[1]) for ex in first.train]
    assert rows == sorted(rows)


def test_stratified_split_unit():
    examples = [Example(i, (i % 3,), str(i)) for i in range(30)]
    train, val = stratified_split(examples, 0.2, seed=0)
    assert Counter(ex.labels[0] for ex in val) == {0: 2, 1: 2, 2: 2}
    assert sorted(train + val, key=lambda ex: ex.input) == examples
    assert stratified_split(examples, 0.0, seed=0) == (examples, [])


def test_val_fraction_zero_means_no_val(tmp_path):
    data = load_data(make_text_csv(tmp_path / "t.csv", per_class=5), task="text-cls", val_fraction=0)
    assert (len(data.train), len(data.val), data.split["val"]) == (10, 0, "none")


# --- multi-label ------------------------------------------------------------------------------------------------


def test_multi_label_jsonl_lists_are_detected(tmp_path):
    data = load_data(make_text_csv(tmp_path / "m.jsonl", per_class=12, fmt="jsonl", multi_label=True),
                     task="text-cls", val_fraction=0)
    assert data.multi_label and data.label_names == ["food", "movie", "neg", "pos"]
    assert all(len(ex.labels) == 2 for ex in data.train)
    assert data.class_counts() == {"food": 12, "movie": 12, "neg": 12, "pos": 12}


def test_multi_label_joined_strings(tmp_path):
    path = make_text_csv(tmp_path / "m.csv", per_class=12, multi_label=True)
    data = load_data(path, task="text-cls", multi_label=True, val_fraction=0)
    assert data.multi_label and data.label_names == ["food", "movie", "neg", "pos"]
    assert all(len(ex.labels) == 2 and ex.labels == tuple(sorted(ex.labels)) for ex in data.train)
    # without multi_label the joined string is one label name
    single = load_data(path, task="text-cls", val_fraction=0)
    assert not single.multi_label and "pos|movie" in single.label_names


def test_multi_label_separator_and_duplicates(tmp_path):
    path = write_rows(tmp_path / "m.csv", ["text", "labels"],
                      [["a", "x; y"], ["b", "y;y"], ["c", "x"], ["d", "z;x"]])
    data = load_data(path, task="text-cls", multi_label=True, label_sep=";", val_fraction=0)
    assert data.label_names == ["x", "y", "z"]
    assert [ex.labels for ex in data.train] == [(0, 1), (1,), (0,), (0, 2)]


def test_jsonl_lists_with_single_label_forced(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [{"text": "a", "label": ["x"]}, {"text": "b", "label": ["y"]}])
    data = load_data(path, task="text-cls", multi_label=False, val_fraction=0)
    assert not data.multi_label and data.label_names == ["x", "y"]
    write_jsonl(path, [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": "y"}])
    with pytest.raises(InvalidInputError, match=r"l\.jsonl row 1: 2 labels .*multi-label"):
        load_data(path, task="text-cls", multi_label=False)


# --- columns ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text_col", "label_col"), [
    ("text", "label"), ("sentence", "labels"), ("review", "category"), ("utterance", "intent"),
    ("Content", "Class"), ("body", "target"),
])
def test_columns_are_detected(tmp_path, text_col, label_col):
    path = make_text_csv(tmp_path / "t.csv", per_class=4, text_col=text_col, label_col=label_col)
    data = load_data(path, task="text-cls", val_fraction=0)
    assert data.label_names == ["neg", "pos"] and len(data.train) == 8


def test_first_candidate_column_wins_and_explicit_columns(tmp_path):
    path = write_rows(tmp_path / "t.csv", ["id", "input", "text", "class", "label"],
                      [["1", "in a", "text a", "c1", "l1"], ["2", "in b", "text b", "c2", "l2"]])
    data = load_data(path, task="text-cls", val_fraction=0)
    assert (data.train[0].input, data.label_names) == ("text a", ["l1", "l2"])
    data = load_data(path, task="text-cls", input_col="input", label_col="class", val_fraction=0)
    assert (data.train[0].input, data.label_names) == ("in a", ["c1", "c2"])


def test_manifest_explicit_columns(tmp_path):
    folder = make_image_folder(tmp_path / "img", classes=("red", "blue"), per_class=3)
    manifest = write_manifest(folder, path_col="file_name", label_col="kind")
    with pytest.raises(InvalidInputError, match="no file path column.*'file_name', 'kind'"):
        load_data(manifest, task="image-cls")
    data = load_data(manifest, task="image-cls", input_col="file_name", label_col="kind")
    assert data.label_names == ["blue", "red"] and len(all_examples(data)) == 6


# --- errors -----------------------------------------------------------------------------------------------------


def _case_missing_source(d: Path):
    return {"source": d / "nope.csv", "task": "text-cls"}, "nope.csv"


def _case_missing_val(d: Path):
    return {"source": make_text_csv(d / "t.csv", per_class=4), "task": "text-cls", "val": d / "v.csv"}, "v.csv"


def _case_corrupt_image(d: Path):
    root = make_image_folder(d / "img", per_class=3)
    write_corrupt_image(root / "red" / "zz_bad.png")
    return {"source": root, "task": "image-cls"}, "zz_bad.png"


def _case_truncated_image(d: Path):
    root = make_image_folder(d / "img", per_class=3)
    write_corrupt_image(root / "green" / "cut.png", truncate=True)
    return {"source": root, "task": "image-cls"}, "cut.png"


def _case_corrupt_audio(d: Path):
    root = make_audio_folder(d / "aud", per_class=2, seconds=0.1)
    write_corrupt_audio(root / "low" / "bad.wav")
    return {"source": root, "task": "audio-cls"}, "bad.wav"


def _case_manifest_missing_file(d: Path):
    manifest = write_manifest(make_image_folder(d / "img", per_class=2))
    with open(manifest, "a") as handle:
        handle.write("red/ghost.png,red\n")
    return {"source": manifest, "task": "image-cls"}, "ghost.png"


def _case_empty_folder(d: Path):
    for name in ("a", "b"):
        (d / "img" / name).mkdir(parents=True)
    return {"source": d / "img", "task": "image-cls"}, "img"


def _case_loose_images(d: Path):
    write_image(d / "img" / "1.png", (1, 2, 3))
    return {"source": d / "img", "task": "image-cls"}, "no class subfolders"


def _case_header_only(d: Path):
    return {"source": write_rows(d / "h.csv", ["text", "label"], []), "task": "text-cls"}, "h.csv"


def _case_empty_file(d: Path):
    (d / "e.csv").write_text("")
    return {"source": d / "e.csv", "task": "text-cls"}, "e.csv"


def _case_single_class(d: Path):
    path = write_rows(d / "one.csv", ["text", "label"], [["a", "x"], ["b", "x"]])
    return {"source": path, "task": "text-cls"}, "one.csv"


def _case_single_class_folder(d: Path):
    return {"source": make_image_folder(d / "img", classes=("red",), per_class=3), "task": "image-cls"}, "img"


def _case_missing_column(d: Path):
    path = write_rows(d / "c.csv", ["words", "label"], [["a", "x"], ["b", "y"]])
    return {"source": path, "task": "text-cls"}, "c.csv"


def _case_missing_explicit_column(d: Path):
    return {"source": make_text_csv(d / "t.csv", per_class=3), "task": "text-cls", "label_col": "tag"}, "t.csv"


def _case_empty_text(d: Path):
    path = write_rows(d / "t.csv", ["text", "label"], [["a", "x"], ["b", "y"], ["  ", "x"]])
    return {"source": path, "task": "text-cls"}, "t.csv row 3"


def _case_empty_label(d: Path):
    path = write_jsonl(d / "t.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": None},
                                       {"text": "c", "label": "y"}])
    return {"source": path, "task": "text-cls"}, "t.jsonl row 2"


def _case_unseen_eval_labels(d: Path):
    train = make_text_csv(d / "train.csv", per_class=4)
    val = write_rows(d / "val.csv", ["text", "label"], [["a", "pos"], ["b", "neutral"], ["c", "mixed"]])
    return {"source": train, "task": "text-cls", "val": val}, "val.csv"


def _case_unseen_test_folder(d: Path):
    root = make_image_folder(d / "img", per_class=3, layout="splits", eval_per_class=1)
    write_image(root / "test" / "purple" / "0.png", (140, 50, 180))
    return {"source": root, "task": "image-cls"}, "purple"


def _case_bad_encoding(d: Path):
    path = d / "latin.csv"
    path.write_bytes("text,label\ncaf\u00e9 ok,pos\nbad,neg\n".encode("latin-1"))
    return {"source": path, "task": "text-cls"}, "latin.csv"


def _case_unknown_text_type(d: Path):
    (d / "t.xlsx").write_bytes(b"PK")
    return {"source": d / "t.xlsx", "task": "text-cls"}, "t.xlsx"


def _case_unknown_image_type(d: Path):
    return {"source": write_image(d / "one.png", (1, 2, 3)), "task": "image-cls"}, "one.png"


def _case_text_folder(d: Path):
    return {"source": d, "task": "text-cls"}, "not a folder"


def _case_bad_json_line(d: Path):
    (d / "b.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": oops}\n')
    return {"source": d / "b.jsonl", "task": "text-cls"}, "b.jsonl: line 2"


def _case_json_line_not_object(d: Path):
    write_jsonl(d / "b.jsonl", [{"text": "a", "label": "x"}, ["b", "y"]])
    return {"source": d / "b.jsonl", "task": "text-cls"}, "b.jsonl: line 2"


def _case_bad_label_value(d: Path):
    write_jsonl(d / "b.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": {"k": 1}}])
    return {"source": d / "b.jsonl", "task": "text-cls"}, "b.jsonl row 2"


def _case_val_fraction(d: Path):
    return {"source": make_text_csv(d / "t.csv", per_class=3), "task": "text-cls", "val_fraction": 1.0}, \
        "val_fraction"


ERROR_CASES = {name.removeprefix("_case_"): fn for name, fn in dict(globals()).items() if name.startswith("_case_")}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_name_the_file(tmp_path, case):
    kwargs, named = ERROR_CASES[case](tmp_path)
    kwargs = {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}
    with pytest.raises(InvalidInputError) as info:
        load_data(**kwargs)
    message = str(info.value)
    assert named in message and "\n" not in message, message


@pytest.mark.parametrize(("case", "fragments"), [
    ("missing_column", ["no text column", "'words', 'label'", "--input-col"]),
    ("missing_explicit_column", ["no column 'tag'", "'text', 'label'"]),
    ("unseen_eval_labels", ["'mixed', 'neutral'", "not seen in training"]),
    ("bad_encoding", ["UTF-8", "line 2"]),
    ("corrupt_image", ["not a readable image", "--skip-bad"]),
    ("corrupt_audio", ["not a readable audio file"]),
    ("single_class", ["only one class", "'x'"]),
    ("empty_folder", ["no image files (.jpg, .jpeg, .png", "(a, b)"]),
    ("loose_images", ["1 image file(s) directly", "CLASS"]),
    ("empty_text", ["text is empty", "'text'"]),
])
def test_error_messages_say_what_is_wrong(tmp_path, case, fragments):
    kwargs, _ = ERROR_CASES[case](tmp_path)
    with pytest.raises(InvalidInputError) as info:
        load_data(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_unknown_task(tmp_path):
    with pytest.raises(UnknownTaskError):
        load_data(make_text_csv(tmp_path / "t.csv", per_class=3), task="text-classification")


# --- skip_bad ---------------------------------------------------------------------------------------------------


def test_skip_bad_skips_and_counts(tmp_path):
    root = make_image_folder(tmp_path / "img", per_class=4)
    write_corrupt_image(root / "red" / "bad1.png")
    write_corrupt_image(root / "blue" / "bad2.png", truncate=True)
    data = load_data(root, task="image-cls", skip_bad=True)
    assert len(all_examples(data)) == 12 and data.summary()["skipped"] == 2
    assert {s["item"] for s in data.skipped} == {"red/bad1.png", "blue/bad2.png"}
    assert all("not a readable image" in s["reason"] for s in data.skipped)


def test_skip_bad_audio_manifest_and_text_rows(tmp_path):
    root = make_audio_folder(tmp_path / "aud", per_class=2, seconds=0.1)
    write_corrupt_audio(root / "mid" / "bad.wav")
    manifest = write_manifest(root)
    with open(manifest, "a") as handle:
        handle.write("missing.wav,low\n,low\n")
    data = load_data(manifest, task="audio-cls", skip_bad=True)
    assert len(all_examples(data)) == 6
    assert [s["item"] for s in data.skipped] == ["mid/bad.wav", "missing.wav", "manifest.csv:row 9"]

    path = write_rows(tmp_path / "t.csv", ["text", "label"], [["a", "x"], ["", "x"], ["b", ""], ["c", "y"]])
    data = load_data(path, task="text-cls", skip_bad=True, val_fraction=0)
    assert [ex.id for ex in data.train] == ["t.csv:row 1", "t.csv:row 4"]
    assert [s["item"] for s in data.skipped] == ["t.csv:row 2", "t.csv:row 3"]


def test_skip_bad_everything_is_an_empty_dataset(tmp_path):
    (tmp_path / "img").mkdir()
    write_corrupt_image(tmp_path / "img" / "a" / "1.png")
    write_corrupt_image(tmp_path / "img" / "b" / "1.png")
    with pytest.raises(InvalidInputError, match=r"no train examples found \(2 bad items skipped\)"):
        load_data(tmp_path / "img", task="image-cls", skip_bad=True)


# --- fingerprint ------------------------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_sensitive(tmp_path):
    from PIL import Image

    root = make_image_folder(tmp_path / "a", per_class=3)
    base = load_data(root, task="image-cls").fingerprint
    assert load_data(root, task="image-cls").fingerprint == base
    shutil.copytree(root, tmp_path / "copy")
    assert load_data(tmp_path / "copy", task="image-cls").fingerprint == base   # the place does not matter

    target = tmp_path / "copy" / "green" / "001.png"
    image = Image.open(target).convert("RGB")
    r, g, b = image.getpixel((0, 0))
    image.putpixel((0, 0), ((r + 1) % 256, g, b))
    image.save(target)
    assert load_data(tmp_path / "copy", task="image-cls").fingerprint != base

    (tmp_path / "copy" / "green" / "001.png").rename(tmp_path / "copy" / "blue" / "moved.png")
    assert load_data(tmp_path / "copy", task="image-cls").fingerprint != base


def test_fingerprint_of_text(tmp_path):
    path = make_text_csv(tmp_path / "t.csv", per_class=5)
    base = load_data(path, task="text-cls").fingerprint
    assert load_data(path, task="text-cls").fingerprint == base
    assert load_data(path, task="text-cls", val_fraction=0.3).fingerprint != base
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1] + "x", *lines[2:]]) + "\n")
    assert load_data(path, task="text-cls").fingerprint != base


# --- speed ------------------------------------------------------------------------------------------------------


def test_ten_thousand_text_rows_are_fast(tmp_path):
    path = make_text_csv(tmp_path / "big.csv", per_class=5000)
    data = load_data(path, task="text-cls")
    assert (len(data.train), len(data.val)) == (9000, 1000)
