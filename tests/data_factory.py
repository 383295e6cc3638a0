"""Small, learnable synthetic datasets for tests: image folders, text tables and audio folders, plus bad files.

Every dataset is deterministic for a seed and easy enough that a tiny model learns it far above chance:

- images: each class has a dominant colour (with pixel noise and a random shape on top);
- text: sentences whose sentiment words come from the class (the words are in the tiny BERT vocabulary of
  ``tiny_models.WORDS``);
- audio: tones at a class-specific frequency (with noise, random phase, amplitude and a little detuning).
"""

from __future__ import annotations

import colorsys
import csv
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

COLOURS = {
    "red": (210, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 210), "yellow": (225, 210, 40),
    "purple": (140, 50, 180), "orange": (240, 140, 30), "cyan": (40, 200, 210), "black": (20, 20, 20),
    "white": (235, 235, 235),
}
TONES = {"low": 300.0, "mid": 900.0, "high": 2000.0}

POSITIVE = "good great fine love excellent happy".split()
NEGATIVE = "bad awful poor hate terrible sad".split()
FILLER = "the a movie film was is it this very".split()
SENTIMENT_WORDS = {"pos": POSITIVE, "neg": NEGATIVE}
# The multi-label variant adds a topic label; its words leave the filler so the topic is learnable too.
TOPIC_WORDS = {"movie": ["movie", "film"], "food": ["food", "service"]}
TOPIC_FILLER = "the a was is it this very".split()


# --- images -----------------------------------------------------------------------------------------------------


def class_colour(name: str, index: int, count: int) -> tuple[int, int, int]:
    """The dominant colour of a class: a named colour, else hues spread evenly over the classes."""
    if name in COLOURS:
        return COLOURS[name]
    r, g, b = colorsys.hsv_to_rgb(index / max(count, 1), 0.8, 0.85)
    return int(r * 255), int(g * 255), int(b * 255)


def write_image(path: Path, colour: tuple[int, int, int], size: int = 40, seed: int = 0) -> Path:
    """Write a ``size``×``size`` image (format from the suffix) of ``colour`` with noise and a random shape."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    pixels = np.asarray(colour, dtype=np.float32) + rng.normal(0, 22, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    side = int(rng.integers(size // 5, size * 2 // 5 + 1))
    x, y = (int(v) for v in rng.integers(0, size - side, 2))
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + side, y + side), fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _split_counts(layout: str, per_class: int, eval_per_class: int | None) -> dict[str, int]:
    """Files per class in each sub-folder: one unnamed folder ("flat"), or train/val/test ("splits")."""
    if layout == "flat":
        return {"": per_class}
    if layout == "splits":
        n_eval = eval_per_class if eval_per_class is not None else max(2, per_class // 4)
        return {"train": per_class, "val": n_eval, "test": n_eval}
    raise ValueError(f"layout must be 'flat' or 'splits', not {layout!r}")


def make_image_folder(root: str | Path, classes: Sequence[str] = ("red", "green", "blue"), per_class: int = 12,
                      size: int = 40, layout: str = "flat", seed: int = 0, eval_per_class: int | None = None,
                      ext: str = "png") -> Path:
    """Write an image-cls folder: ``root/<class>/NNN.png``, or ``root/train|val|test/<class>/`` for "splits".

    Args:
        root: the folder to create.
        classes: class names; named colours (red, green, ...) get that colour.
        per_class: images per class (in ``train/`` for the split layout).
        size: image side in pixels.
        layout: "flat" or "splits".
        seed: makes the images reproducible.
        eval_per_class: images per class in ``val/`` and ``test/``; default ``max(2, per_class // 4)``.
        ext: image file extension.

    Returns:
        ``root``.
    """
    root = Path(root)
    parts = _split_counts(layout, per_class, eval_per_class)
    for offset, (part, count) in enumerate(parts.items()):
        for c, name in enumerate(classes):
            colour = class_colour(name, c, len(classes))
            for i in range(count):
                image_seed = seed * 1_000_003 + offset * 100_003 + c * 1009 + i
                write_image(root / part / name / f"{i:03d}.{ext}", colour, size, image_seed)
    return root


# --- text -------------------------------------------------------------------------------------------------------


def make_sentence(rng: random.Random, class_words: Sequence[str], filler: Sequence[str]) -> str:
    words = [rng.choice(class_words) for _ in range(2)] + [rng.choice(filler) for _ in range(rng.randint(3, 6))]
    rng.shuffle(words)
    return " ".join(words)


def make_text_rows(per_class: int = 30, seed: int = 0, multi_label: bool = False) -> list[tuple[str, list[str]]]:
    """``(text, labels)`` rows, shuffled: ``per_class`` per sentiment (pos, neg), plus a topic when multi-label."""
    rng = random.Random(seed)
    rows: list[tuple[str, list[str]]] = []
    for sentiment, words in SENTIMENT_WORDS.items():
        for i in range(per_class):
            if multi_label:
                topic = list(TOPIC_WORDS)[i % len(TOPIC_WORDS)]
                class_words = [*words, *TOPIC_WORDS[topic]]
                rows.append((make_sentence(rng, class_words, TOPIC_FILLER), [sentiment, topic]))
            else:
                rows.append((make_sentence(rng, words, FILLER), [sentiment]))
    rng.shuffle(rows)
    return rows


def make_text_csv(path: str | Path, per_class: int = 30, seed: int = 0, fmt: str = "csv",
                  multi_label: bool = False, text_col: str = "text", label_col: str = "label") -> Path:
    """Write a text-cls table of pos/neg sentences (multi-label: also a topic, e.g. "pos|movie").

    Args:
        path: the file to write (its suffix is not checked against ``fmt``).
        per_class: rows per sentiment.
        seed: makes the rows reproducible.
        fmt: "csv", "tsv" or "jsonl".
        multi_label: add a topic label; CSV/TSV join labels with "|", JSONL writes a list.
        text_col: the text column's name.
        label_col: the label column's name.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = make_text_rows(per_class, seed, multi_label)
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as handle:
            for text, labels in rows:
                handle.write(json.dumps({text_col: text, label_col: labels if multi_label else labels[0]}) + "\n")
    elif fmt in ("csv", "tsv"):
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, dialect="excel-tab" if fmt == "tsv" else "excel")
            writer.writerow([text_col, label_col])
            writer.writerows((text, "|".join(labels)) for text, labels in rows)
    else:
        raise ValueError(f"fmt must be 'csv', 'tsv' or 'jsonl', not {fmt!r}")
    return path


# --- audio ------------------------------------------------------------------------------------------------------


def class_tone(name: str, index: int) -> float:
    """The frequency of a class: low/mid/high get 300/900/2000 Hz, others a geometric ladder from 300 Hz."""
    return TONES.get(name, 300.0 * 2.2 ** index)


def write_tone(path: Path, frequency: float, sample_rate: int = 16000, seconds: float = 0.5, seed: int = 0) -> Path:
    """Write a noisy tone near ``frequency`` (random phase, amplitude, ±3% detune) in the format of the suffix."""
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    detuned = frequency * rng.uniform(0.97, 1.03)
    wave = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * detuned * t + rng.uniform(0, 2 * np.pi))
    wave += rng.normal(0, 0.05, t.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.clip(wave, -1, 1).astype(np.float32), sample_rate)
    return path


def make_audio_folder(root: str | Path, classes: Sequence[str] = ("low", "mid", "high"), per_class: int = 10,
                      sample_rate: int = 16000, seconds: float = 0.5, seed: int = 0, fmt: str = "wav",
                      layout: str = "flat", alt_sample_rate: int | None = None,
                      eval_per_class: int | None = None) -> Path:
    """Write an audio-cls folder of class tones: ``root/<class>/NNN.wav`` (or ``root/train|val|test/<class>/``).

    Args:
        root: the folder to create.
        classes: class names; low/mid/high are 300/900/2000 Hz.
        per_class: files per class (in ``train/`` for the split layout).
        sample_rate: the sample rate of the files.
        seconds: the length of each file.
        seed: makes the files reproducible.
        fmt: file format and extension: "wav", "flac" or "ogg".
        layout: "flat" or "splits".
        alt_sample_rate: when set, every second file is written at this rate instead (e.g. 8000), to exercise
            resampling.
        eval_per_class: files per class in ``val/`` and ``test/``; default ``max(2, per_class // 4)``.

    Returns:
        ``root``.
    """
    root = Path(root)
    parts = _split_counts(layout, per_class, eval_per_class)
    for offset, (part, count) in enumerate(parts.items()):
        for c, name in enumerate(classes):
            for i in range(count):
                rate = alt_sample_rate if alt_sample_rate and i % 2 else sample_rate
                tone_seed = seed * 1_000_003 + offset * 100_003 + c * 1009 + i
                write_tone(root / part / name / f"{i:03d}.{fmt}", class_tone(name, c), rate, seconds, tone_seed)
    return root


# --- manifests and bad files ------------------------------------------------------------------------------------


def write_manifest(folder: str | Path, path: str | Path | None = None, path_col: str = "path",
                   label_col: str = "label") -> Path:
    """Write a CSV manifest (file path relative to the CSV's folder, label) of a folder of class subfolders.

    Args:
        folder: holds ``<class>/<file>`` files.
        path: the CSV to write; default ``folder/manifest.csv``.
        path_col: the path column's name.
        label_col: the label column's name.

    Returns:
        The CSV's path.
    """
    folder = Path(folder)
    path = Path(path) if path is not None else folder / "manifest.csv"
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.parent != folder)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([path_col, label_col])
        for file in files:
            writer.writerow([Path(os.path.relpath(file, path.parent)).as_posix(), file.parent.name])
    return path


def write_corrupt_image(path: str | Path, *, truncate: bool = False) -> Path:
    """Write a file PIL cannot read: junk after a PNG signature, or (``truncate``) a real PNG cut in half."""
    path = Path(path)
    if truncate:
        write_image(path, (128, 128, 128), size=32)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return path


def write_corrupt_audio(path: str | Path) -> Path:
    """Write a file soundfile cannot read: a RIFF/WAVE header followed by junk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 2)
    return path
