"""Files that look fine but are not: non-finite samples, truncated and oversized images, huge CSV cells; and what
the data summary reports about the columns chosen and the files left out."""

from __future__ import annotations

import csv
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_REGISTRY, run_zoo
from data_factory import make_audio_folder, make_image_folder, write_image

from zoo.audio import read_audio
from zoo.data import load_data
from zoo.errors import InvalidInputError

# --- fixtures built here ----------------------------------------------------------------------------------------


def write_float_wav(path: Path, *, bad: float | None = np.nan, at: int = 100, frames: int = 1600) -> Path:
    """A float32 WAV of a quiet tone, with ``bad`` (NaN or infinity) at frame ``at`` unless None."""
    import soundfile

    samples = (0.1 * np.sin(np.arange(frames) / 5)).astype(np.float32)
    if bad is not None and frames:
        samples[at] = bad
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, 16000, subtype="FLOAT")
    return path


def write_truncated_jpeg(path: Path) -> Path:
    """A noisy JPEG with its second half cut off: PIL opens and verifies it, but cannot decode every pixel."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG", quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_float_tiff(path: Path, *, bad: float | None = np.nan) -> Path:
    """A 32-bit float (mode "F") TIFF, with one ``bad`` value unless None."""
    from PIL import Image

    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    if bad is not None:
        values[3, 4] = bad
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values, mode="F").save(path, format="TIFF")
    return path


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG claiming ``width`` x ``height`` grey pixels with almost no data: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))
    return path


def refusal(**kwargs) -> str:
    with pytest.raises(InvalidInputError) as info:
        load_data(**{k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()})
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --- audio ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_audio_is_refused_then_skipped(tmp_path, bad):
    root = make_audio_folder(tmp_path / "aud", per_class=2, seconds=0.1)
    write_float_wav(root / "low" / "broken.wav", bad=bad)
    message = refusal(source=root, task="audio-cls")
    assert "broken.wav" in message and "NaN or infinite samples" in message and "0.006 s" in message

    data = load_data(root, task="audio-cls", skip_bad=True)
    assert data.summary()["skipped"] == 1 and data.skipped[0]["item"] == "low/broken.wav"
    assert len(data.train) + len(data.val) == 6


def test_audio_is_checked_in_blocks_and_names_the_first_bad_sample(tmp_path, monkeypatch):
    import zoo.audio

    monkeypatch.setattr(zoo.audio, "CHECK_BLOCK_FRAMES", 256)   # the NaN lands in the seventh block
    path = write_float_wav(tmp_path / "late.wav", at=1500)
    assert zoo.audio.audio_problem(path) == \
        "the audio holds NaN or infinite samples (the first at 0.094 s, frame 1500)"
    assert zoo.audio.audio_problem(write_float_wav(tmp_path / "fine.wav", bad=None)) is None


def test_empty_audio_is_refused_in_the_check_and_when_read(tmp_path):
    root = make_audio_folder(tmp_path / "aud", per_class=2, seconds=0.1)
    empty = write_float_wav(root / "mid" / "empty.wav", frames=0)
    message = refusal(source=root, task="audio-cls")
    assert "empty.wav" in message and "no samples" in message
    with pytest.raises(InvalidInputError, match=r"empty\.wav: the audio has no samples$"):
        read_audio(empty, sample_rate=16000)


def test_read_audio_refuses_non_finite_samples_in_the_part_it_reads(tmp_path):
    path = write_float_wav(tmp_path / "nan.wav", at=1000)
    with pytest.raises(InvalidInputError, match=r"nan\.wav: the audio holds NaN or infinite samples"):
        read_audio(path, sample_rate=16000)
    # Only the first max_seconds are decoded, and there the samples are finite.
    assert read_audio(path, sample_rate=16000, max_seconds=0.05).shape == (800,)


def test_hf_audio_arrays_are_checked_naming_the_example():
    from zoo.data.hf import _read_split
    from zoo.data.raw import ReadOptions

    rows = {"audio": [{"array": np.zeros(160, np.float32), "sampling_rate": 16000},
                      {"array": np.array([0.0, np.nan], np.float32), "sampling_rate": 16000},
                      {"array": np.zeros(0, np.float32), "sampling_rate": 16000}],
            "label": ["a", "b", "a"]}
    with pytest.raises(InvalidInputError, match=r"^hf:speech/train:row 2: the audio holds NaN .*'audio'"):
        _read_split(rows, "speech/train", "audio", "label", None, ReadOptions(), report_unlabelled=True,
                    input_kind="audio")
    opts = ReadOptions(skip_bad=True)
    kept = _read_split(rows, "speech/val", "audio", "label", None, opts, report_unlabelled=False,
                       input_kind="audio")
    assert [ex.id for ex in kept] == ["speech/val:row 1"]
    assert [s["item"] for s in opts.skipped] == ["speech/val:row 2", "speech/val:row 3"]
    assert "no samples" in opts.skipped[1]["reason"]


# --- images -----------------------------------------------------------------------------------------------------


def test_truncated_jpeg_passes_verify_but_is_refused_then_skipped(tmp_path):
    from PIL import Image

    root = make_image_folder(tmp_path / "img", per_class=3, ext="jpg")
    cut = write_truncated_jpeg(root / "red" / "cut.jpg")
    with Image.open(cut) as image:
        image.verify()    # what the check used to rely on: it does not decode pixels
    message = refusal(source=root, task="image-cls")
    assert "cut.jpg" in message and "truncated" in message

    data = load_data(root, task="image-cls", skip_bad=True)
    assert [s["item"] for s in data.skipped] == ["red/cut.jpg"] and data.summary()["skipped"] == 1


def test_float_tiff_with_nan_is_refused_and_a_finite_one_read(tmp_path):
    root = make_image_folder(tmp_path / "img", per_class=3)
    write_float_tiff(root / "green" / "depth.tif", bad=None)
    assert len(load_data(root, task="image-cls", val_fraction=0).train) == 10
    write_float_tiff(root / "blue" / "nan.tiff")
    message = refusal(source=root, task="image-cls")
    assert "nan.tiff" in message and "NaN or infinite values" in message
    data = load_data(root, task="image-cls", skip_bad=True, val_fraction=0)
    assert len(data.train) == 10 and data.skipped[0]["item"] == "blue/nan.tiff"


def test_images_over_the_pixel_cap_are_refused_before_decoding(tmp_path, monkeypatch):
    import zoo.images

    root = make_image_folder(tmp_path / "img", per_class=3)       # 40 x 40 pixels each
    monkeypatch.setattr(zoo.images, "MAX_IMAGE_PIXELS", 1000)
    message = refusal(source=root, task="image-cls")
    assert "40x40 pixels, more than 1,000" in message and ".png" in message
    # every file is over the cap: skipping them all leaves nothing to train on
    with pytest.raises(InvalidInputError, match=r"no train examples found \(9 bad items skipped\)"):
        load_data(root, task="image-cls", skip_bad=True)


@pytest.mark.parametrize(("width", "height"), [(10_000, 10_000), (20_000, 20_000)])
def test_decompression_bombs_are_a_clean_refusal(tmp_path, width, height):
    # 100 megapixels is where PIL only warns; 400 where it raises DecompressionBombError. Both are one refusal.
    root = make_image_folder(tmp_path / "img", per_class=2)
    write_png_header(root / "red" / "bomb.png", width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # a bomb must be a refusal, never a warning on the console
        message = refusal(source=root, task="image-cls")
    assert "bomb.png" in message and "more than 89,478,485 pixels" in message
    data = load_data(root, task="image-cls", skip_bad=True)
    assert [s["item"] for s in data.skipped] == ["red/bomb.png"]


def test_pil_keeps_refusing_truncated_images():
    import zoo_timm.family  # noqa: F401
    from PIL import ImageFile

    import zoo.data  # noqa: F401
    import zoo.images  # noqa: F401

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- tables -----------------------------------------------------------------------------------------------------


def test_csv_cell_over_the_csv_module_limit_is_read_whole(tmp_path):
    long_text = "word " * (200 * 1024 // 5)      # 200 KiB, past the csv module's default 128 KiB per field
    path = tmp_path / "long.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["text", "label"], [long_text, "a"], ["short", "b"], ["more", "a"]])
    limit = csv.field_size_limit()
    data = load_data(path, task="text-cls", val_fraction=0)
    assert data.train[0].input == long_text
    assert csv.field_size_limit() == limit      # the module's limit is as it was


def test_rows_over_the_cap_are_refused_naming_file_and_row(tmp_path, monkeypatch):
    import zoo.data.tables as tables

    monkeypatch.setattr(tables, "MAX_ROW_CHARS", 1000)
    path = tmp_path / "t.csv"
    path.write_text("text,label\nshort,a\n" + "x" * 600 + "," + "y" * 600 + "\nfine,b\n")
    message = refusal(source=path, task="text-cls")
    assert message.startswith(f"{path}: row 2 holds 1,200 characters, more than the 1,000 characters")

    # A single cell past the csv module's limit stops the parser inside the cell; the row is still named.
    previous = csv.field_size_limit(500)
    try:
        path.write_text("text,label\nshort,a\nok,b\n" + "x" * 2000 + ",a\n")
        assert f"{path}: row 3 has a cell longer than the 1,000 characters" in refusal(source=path, task="text-cls")
    finally:
        csv.field_size_limit(previous)

    lines = tmp_path / "t.jsonl"
    lines.write_text(json.dumps({"text": "a", "label": "a"}) + "\n" + json.dumps({"text": "z" * 1200, "label": "b"}))
    assert refusal(source=lines, task="text-cls").startswith(f"{lines}: line 2 holds 1,2")


# --- what the summary reports -----------------------------------------------------------------------------------


def test_summary_names_the_columns_chosen(tmp_path):
    from zoo.cli.adapt_cmd import _data_line

    path = tmp_path / "reviews.csv"
    path.write_text("id,review,stars\n1,good,5\n2,bad,1\n3,fine,5\n4,poor,1\n")
    val = tmp_path / "val.jsonl"
    val.write_text('{"sentence": "great", "stars": "5"}\n{"sentence": "awful", "stars": "1"}\n')
    data = load_data(path, task="text-cls", label_col="stars", val=str(val))
    summary = data.summary()
    assert summary["columns"] == {"train": {"text": "review", "label": "stars"},
                                  "val": {"text": "sentence", "label": "stars"}}
    assert json.loads(json.dumps(summary)) == summary     # as zoo_run.json keeps it
    assert _data_line(summary) == ("data: columns text 'review', label 'stars' (train); "
                                   "columns text 'sentence', label 'stars' (val)")

    root = make_image_folder(tmp_path / "img", per_class=3)
    manifest = tmp_path / "img" / "files.csv"
    manifest.write_text("file,class\n" + "".join(f"{c}/00{i}.png,{c}\n" for c in ("red", "blue") for i in range(3)))
    assert load_data(manifest, task="image-cls").summary()["columns"] == {"train": {"path": "file",
                                                                                    "label": "class"}}
    assert load_data(root, task="image-cls").summary()["columns"] == {}


def test_summary_counts_files_ignored_for_their_extension(tmp_path):
    from zoo.cli.adapt_cmd import _data_line

    root = make_image_folder(tmp_path / "img", per_class=3)
    for index in range(7):
        (root / "red" / f"note{index}.txt").write_text("not an image")
    (root / "blue" / "scan.heic").write_bytes(b"\0")
    (root / "blue" / ".DS_Store").write_bytes(b"\0")                 # hidden: neither read nor reported
    write_float_wav(root / "green" / "x.wav", bad=None)
    write_image(root / "green" / "extra.PNG", (1, 200, 1))            # extensions match ignoring case
    data = load_data(root, task="image-cls", skip_bad=True)
    ignored = data.summary()["ignored_files"]
    assert ignored["count"] == 9 and ignored["examples"] == ["blue/scan.heic", "green/x.wav", "red/note0.txt",
                                                             "red/note1.txt", "red/note2.txt"]
    assert len(data.train) + len(data.val) == 10
    assert _data_line(data.summary()) == ("data: 9 file(s) ignored for their extension (blue/scan.heic, "
                                          "green/x.wav, red/note0.txt, red/note1.txt, red/note2.txt, ...)")
    clean = load_data(make_image_folder(tmp_path / "clean", per_class=2), task="image-cls").summary()
    assert clean["ignored_files"] == {"count": 0, "examples": []} and _data_line(clean) == ""


# --- through the CLI --------------------------------------------------------------------------------------------


def test_cli_adapt_refuses_a_nan_wav_in_one_line_and_writes_nothing(tmp_path):
    root = make_audio_folder(tmp_path / "aud", per_class=2, seconds=0.1)
    write_float_wav(root / "high" / "nan.wav")
    result = run_zoo("adapt", "tiny-wav2vec2", "--data", str(root), "--output", str(tmp_path / "run"),
                     "--registry", str(FIXTURE_REGISTRY), "--no-store")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nan.wav" in lines[0] and "NaN or infinite" in lines[0] and "--skip-bad" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def image_run(hub, tmp_path_factory) -> Path:
    """A finished linear-probe run of the tiny timm backbone on a few swatches."""
    from zoo import api
    from zoo.engine.config import AdaptConfig

    folder = tmp_path_factory.mktemp("image_run")
    images = make_image_folder(folder / "img", classes=("red", "blue"), per_class=3)
    api.adapt("test_resnet.r160_in1k", str(images), output=folder / "run", val_fraction=0.34,
              config=AdaptConfig(strategy="linear", epochs=1, batch_size=4), registry_files=[str(FIXTURE_REGISTRY)],
              store=False)
    return folder / "run"


def test_predict_refuses_truncated_and_bomb_images_in_one_line(image_run, tmp_path):
    from zoo import api

    # The bomb through the CLI: PIL's DecompressionBombError is neither an OSError nor a zoo error.
    bomb = write_png_header(tmp_path / "bomb.png", 20_000, 20_000)
    result = run_zoo("predict", str(image_run), str(bomb))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bomb) in lines[0] and "more than 89,478,485 pixels" in lines[0], result.stderr

    cut = write_truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(InvalidInputError) as info:
        api.predict(image_run, [str(cut)])
    assert str(info.value).startswith(f"{cut}: not a readable image (OSError: image file is truncated")


def test_cli_predict_refuses_an_empty_wav_in_one_line(hub, tmp_path):
    from zoo import api
    from zoo.engine.config import AdaptConfig

    sounds = make_audio_folder(tmp_path / "aud", classes=("low", "high"), per_class=3, seconds=0.1)
    api.adapt("tiny-wav2vec2", str(sounds), output=tmp_path / "run", val_fraction=0.34,
              config=AdaptConfig(strategy="linear", epochs=1, batch_size=4), registry_files=[str(FIXTURE_REGISTRY)],
              store=False)
    empty = write_float_wav(tmp_path / "empty.wav", frames=0)
    result = run_zoo("predict", str(tmp_path / "run"), str(empty))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"Error: {empty}: the audio has no samples"], result.stderr
