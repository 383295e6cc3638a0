"""The run record (zoo.runs.record: read, write, migrate, finished) and the model card (zoo.runs.card) on records
written here, without training: what a card says about where the backbone and the data came from."""

from __future__ import annotations

import json
import math

import pytest

from zoo import api
from zoo.errors import InvalidInputError
from zoo.runs import record as records
from zoo.runs.card import dataset_name, model_card


def finished_record(**changes) -> dict:
    """A finished single-label run's record with every field the card reads."""
    record = {
        "zoo_run_version": 1, "status": "finished", "task": "image-cls", "strategy": "full",
        "strategy_reason": "chosen with --strategy", "family_library": "timm", "multi_label": False,
        "labels": ["cat", "dog"], "run_dir": "/somewhere/runs/photos-resnet",
        "backbone": {"name": "resnet-tiny", "family": "timm", "source": "zoo-test/resnet-tiny", "license": "mit",
                     "languages": [], "commit": "0123456789abcdef0123456789abcdef01234567"},
        "data": {"source": "/somewhere/photos/train", "sizes": {"train": 40, "val": 10, "test": 0},
                 "class_counts": {"train": {"cat": 20, "dog": 20}}, "split": {"val": "folder val/"},
                 "fingerprint": "f" * 64},
        "metrics": {"best": {"accuracy": 0.9, "macro_f1": 0.89}, "test": None, "epochs": []},
        "config": {"epochs": 2, "precision": "fp32", "augment": "light", "seed": 0},
        "best_epoch": 2, "hardware": {"device": "cpu", "processes": 1}, "wall_s": 12.0,
    }
    for key, value in changes.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) else value
    return record


# --- the record -------------------------------------------------------------------------------------------------


def test_record_round_trip_strict_and_atomic(tmp_path):
    data = finished_record(metrics={"best": {"accuracy": 0.9, "macro_f1": math.nan}})
    records.write_record(tmp_path, data)
    text = (tmp_path / "zoo_run.json").read_text()
    assert "NaN" not in text and not list(tmp_path.glob("*.tmp"))
    read = records.read_record(tmp_path)
    assert read.version == records.RECORD_VERSION and read.status == "finished" and read.finished
    assert read.task == "image-cls" and read.to_dict()["metrics"]["best"]["macro_f1"] is None
    assert api.run_record(tmp_path).to_dict() == read.to_dict()


def test_a_record_without_a_version_is_version_1(tmp_path):
    data = finished_record()
    del data["zoo_run_version"]
    (tmp_path / "zoo_run.json").write_text(json.dumps(data))
    read = records.read_record(tmp_path)
    assert read.version == 1 and read.finished and read.to_dict()["backbone"]["name"] == "resnet-tiny"


def test_older_records_are_migrated_and_newer_ones_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "RECORD_VERSION", 2)
    monkeypatch.setitem(records.MIGRATIONS, 1, lambda data: {**data, "migrated": True})
    (tmp_path / "zoo_run.json").write_text(json.dumps(finished_record()))
    read = records.read_record(tmp_path)
    assert read.version == 2 and read.to_dict()["migrated"]

    (tmp_path / "zoo_run.json").write_text(json.dumps(finished_record(zoo_run_version=3)))
    with pytest.raises(InvalidInputError, match="newer zoo"):
        records.read_record(tmp_path)


@pytest.mark.parametrize(("status", "way_on"), [("running", "finish it"), ("failed", "fix the cause")])
def test_only_a_finished_run_is_read_as_finished(status, way_on, tmp_path):
    records.write_record(tmp_path, finished_record(status=status, error="RuntimeError: boom"))
    assert not records.read_record(tmp_path).finished
    with pytest.raises(InvalidInputError, match=way_on):
        records.read_finished_record(tmp_path)


def test_a_folder_without_a_record_is_not_a_run(tmp_path):
    assert not records.has_record(tmp_path)
    with pytest.raises(InvalidInputError, match="not a zoo run directory"):
        records.read_record(tmp_path)


# --- the card ---------------------------------------------------------------------------------------------------


def _card_data(card: str):
    from huggingface_hub import ModelCard

    return ModelCard(card)


def test_card_links_the_base_model_only_when_it_came_from_a_hub_repo():
    read_from_hub = _card_data(model_card(finished_record()))
    assert read_from_hub.data.base_model == "zoo-test/resnet-tiny"
    assert "[zoo-test/resnet-tiny](http" in read_from_hub.text

    # A local folder: named by its last component, no link and no base_model.
    local = _card_data(model_card(finished_record(backbone={"source": "local-dir:/home/me/weights/resnet",
                                                            "commit": None})))
    assert local.data.base_model is None
    assert "Fine-tuned from `resnet`" in local.text and "](resnet)" not in local.text
    assert "/home/me" not in local.text

    # A plugin's backbone whose weights did not come through the Hub cache: named, not linked.
    plugin = _card_data(model_card(finished_record(backbone={"source": "acme/resnet-tiny", "commit": None})))
    assert plugin.data.base_model is None
    assert "Fine-tuned from `acme/resnet-tiny`" in plugin.text and "](http" not in plugin.text.split("## Results")[0]


@pytest.mark.parametrize(("source", "name"), [
    ("/data/photos/train", "photos"),
    ("photos/Validation", "photos"),
    ("/data/photos", "photos"),
    ("tickets.csv", "tickets"),
    ("/data/tickets/train.jsonl", "tickets"),
    ("hf:someone/speech-commands:v0.02", "someone/speech-commands"),
])
def test_the_dataset_is_named_after_the_data_not_its_split(source, name):
    assert dataset_name(source) == name


def test_card_names_the_dataset_after_the_folder_that_holds_the_splits():
    card = _card_data(model_card(finished_record()))
    assert "- source: photos" in card.text
    assert {result.dataset_name for result in card.data.eval_results} == {"photos"}
    # A published record keeps only the last component of a path: the name is given from the full one.
    published = _card_data(model_card(finished_record(data={"source": "train"}), repo_id="me/photos",
                                      dataset=dataset_name("/somewhere/photos/train")))
    assert {result.dataset_name for result in published.data.eval_results} == {"photos"}


def test_card_keeps_the_hub_name_of_an_hf_dataset():
    card = _card_data(model_card(finished_record(data={"source": "hf:someone/pets"})))
    assert card.data.datasets == ["someone/pets"]
    assert {result.dataset_name for result in card.data.eval_results} == {"someone/pets"}


def test_card_shows_how_it_decides_only_with_the_section_and_the_pictures_beside_it():
    def example(kind, name, predicted, file=None, **extra):
        return {"kind": kind, "input": name, "true": ["cat"], "predicted": predicted, "score": 0.93,
                "top": [{"name": "row 1, col 2", "span": [0, 0, 8, 8], "attribution": 0.5}],
                "completeness_error": 0.01, "steps": 4, "seconds": 0.2, "file": file, **extra}

    section = {"method": "ig", "rule": "set with --explain-card", "count": 1, "budget_s": None,
               "examples": [example("correct", "cat/1.png", "cat", "how_it_decides/01-correct-cat_1.png"),
                            example("wrong", "cat/2.png", "dog", "how_it_decides/02-wrong-cat_2.png",
                                    completeness_error=0.2)],
               "predictions": {"correct": 9, "wrong": 1}, "errors": 1,
               "confusion_pairs": [{"true": "cat", "predicted": "dog", "count": 1, "share": 1.0}],
               "class_words": None, "seconds": 1.5, "notes": []}
    assert "How it decides" not in model_card(finished_record())
    card = model_card({**finished_record(), "how_it_decides": section},
                      pictures=["how_it_decides/01-correct-cat_1.png"])
    decides = card.split("## How it decides", 1)[1].split("\n## ", 1)[0]
    assert "![cat/1.png: predicted cat](how_it_decides/01-correct-cat_1.png)" in decides
    assert "02-wrong" not in decides and "predicted **dog** (probability 0.930), true cat" in decides
    assert "completeness error 20.0% (4 steps), above 5%" in decides and "| cat | dog | 1 | 100% |" in decides

    # Text: the words in bold in the text, Markdown in it escaped; the words of each class.
    text = {**example("correct", "reviews.csv:row 3", "pos"), "file": None, "text": "a *great* film|",
            "top": [{"name": "great", "span": [3, 8], "attribution": 1.25}]}
    section = {**section, "examples": [text], "class_words": {"pos": {"texts": 1, "words": [
        {"word": "great", "attribution": 1.25}]}}}
    card = model_card({**finished_record(task="text-cls", family_library="transformers"), "how_it_decides": section})
    assert "> a \\***great**\\* film\\|" in card and "| pos | 1 | great (+1.25) |" in card
