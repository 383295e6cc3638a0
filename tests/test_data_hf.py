"""`hf:NAME[:config]` data through the real `datasets` library, served by the local Hub server."""

from __future__ import annotations

import io

import datasets
import pytest

from zoo.data import load_data
from zoo.errors import InvalidInputError


@pytest.fixture(scope="session")
def hf_datasets(hub, session_dir):
    """Two dataset repos in the Hub's parquet layout: zoo-test/reviews (text) and zoo-test/swatches (images)."""
    import data_factory as factory
    from PIL import Image

    names = ["neg", "pos"]
    rows = factory.make_text_rows(per_class=20, seed=1)
    text_features = datasets.Features({"sentence": datasets.Value("string"),
                                       "label": datasets.ClassLabel(names=names)})
    folder = session_dir / "hf" / "reviews"
    (folder / "data").mkdir(parents=True)

    def write(split, texts, labels):
        table = datasets.Dataset.from_dict({"sentence": texts, "label": labels}, features=text_features)
        table.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))

    write("train", [t for t, _ in rows], [names.index(labels[0]) for _, labels in rows])
    write("validation", ["great film", "awful movie"], [1, 0])
    write("test", ["fine", "poor"], [-1, -1])                    # hidden labels, as on public benchmarks
    hub.store.add_repo("zoo-test/reviews", folder, repo_type="dataset")

    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
    images, labels = [], []
    for index, rgb in enumerate(colours.values()):
        for i in range(8):
            buffer = io.BytesIO()
            Image.new("RGB", (24, 24), tuple(max(0, c - 5 * i) for c in rgb)).save(buffer, format="PNG")
            images.append({"bytes": buffer.getvalue(), "path": None})
            labels.append(index)
    image_features = datasets.Features({"image": datasets.Image(), "colour": datasets.ClassLabel(names=list(colours))})
    folder = session_dir / "hf" / "swatches"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"image": images, "colour": labels}, features=image_features).to_parquet(
        str(folder / "data" / "train-00000-of-00001.parquet"))
    hub.store.add_repo("zoo-test/swatches", folder, repo_type="dataset")
    return {"text": "hf:zoo-test/reviews", "image": "hf:zoo-test/swatches"}


def test_text_dataset_from_the_hub(hf_datasets):
    data = load_data(hf_datasets["text"], task="text-cls")
    assert data.label_names == ["neg", "pos"]                    # ClassLabel order
    assert len(data.train) == 40 and [ex.input for ex in data.val] == ["great film", "awful movie"]
    assert data.test == [] and "no labels" in data.split["test"]
    assert data.train[0].id.startswith("zoo-test/reviews/train:row")
    again = load_data(hf_datasets["text"], task="text-cls")
    assert again.fingerprint == data.fingerprint


def test_image_dataset_from_the_hub_trains(hf_datasets, tmp_path):
    from conftest import FIXTURE_REGISTRY

    from zoo import api
    from zoo.engine.config import AdaptConfig

    data = load_data(hf_datasets["image"], task="image-cls", val_fraction=0.25)
    assert data.label_names == ["red", "green", "blue"] and len(data.val) == 6
    record = api.adapt("test_resnet.r160_in1k", hf_datasets["image"], output=tmp_path / "run", val_fraction=0.25,
                       config=AdaptConfig(strategy="full", epochs=3, batch_size=6, lr=1e-3, patience=0),
                       registry_files=[str(FIXTURE_REGISTRY)], store=False)
    assert record["status"] == "finished" and record["data"]["source"] == hf_datasets["image"]


def test_missing_dataset_split_and_column_are_one_line_errors(hf_datasets):
    with pytest.raises(InvalidInputError, match="could not load Hugging Face dataset 'zoo-test/nothing'"):
        load_data("hf:zoo-test/nothing", task="text-cls")
    with pytest.raises(InvalidInputError, match="no 'holdout' split .*its splits are: train, validation, test"):
        load_data(hf_datasets["text"], task="text-cls", val="holdout")
    with pytest.raises(InvalidInputError, match="no input column"):
        load_data(hf_datasets["text"], task="audio-cls")
    with pytest.raises(InvalidInputError) as info:
        load_data(hf_datasets["text"], task="text-cls", label_col="stars")
    assert "\n" not in str(info.value)


def test_missing_library_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)   # what an environment without it raises: ImportError
    with pytest.raises(InvalidInputError, match="pip install datasets"):
        load_data("hf:zoo-test/reviews", task="text-cls")
