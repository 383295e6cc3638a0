"""zoo explain: attributions per modality, the completeness check, the files drawn, the CLI's output and errors;
the model card's "How it decides"."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURE_REGISTRY, run_zoo, val_inputs
from typer.testing import CliRunner

from zoo import api
from zoo.cli import app as cli_app
from zoo.engine.config import AdaptConfig


@pytest.mark.parametrize("task", ["text-cls", "image-cls", "audio-cls"])
def test_explain_cli_draws_each_modality(serve_runs, task, tmp_path):
    run = serve_runs(task)
    inputs = val_inputs(run, 2)
    result = run_zoo("explain", str(run), *inputs, "-o", str(tmp_path), "--json", check=True)
    explanations = json.loads(result.stdout)
    assert [e["input"] for e in explanations] == inputs
    for explanation in explanations:
        assert explanation["units"] and explanation["steps"] in (4, 8, 16, 32, 64)
        assert explanation["completeness_error"] is not None
        total = sum(u["attribution"] for u in explanation["units"])
        change = explanation["logit"] - explanation["baseline_logit"]
        if explanation["completeness_error"] <= 0.05:   # the units account for the whole change
            assert total == pytest.approx(change, rel=0.06, abs=1e-3)
        else:   # the steps did not suffice, and the explanation says so
            assert explanation["steps"] == 64 and "completeness error" in explanation["warnings"][0]
        (path,) = explanation["files"]
        assert path.endswith(".html" if task == "text-cls" else ".png")
        assert (tmp_path / path.split("/")[-1]).stat().st_size > 0


def test_predict_explain_says_why_the_top_label(serve_runs):
    run = serve_runs("text-cls")
    inputs = val_inputs(run, 2)
    # In-process: a second start of the CLI would cost more than the explanations.
    result = CliRunner().invoke(cli_app, ["predict", str(run), *inputs, "--explain", "--json"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    assert [p["input"] for p in predictions] == inputs
    for prediction, text in zip(predictions, inputs, strict=True):
        assert prediction["explanation"]["label"] == prediction["labels"][0]["label"]
        assert prediction["explanation"]["method"] == "ig" and prediction["explanation"]["seconds"] > 0
        because = prediction["because"]
        assert 0 < len(because) <= 3 and all(entry["name"] in text for entry in because)
        weights = [entry["attribution"] for entry in because]
        assert weights == sorted(weights, reverse=True) and weights[-1] > 0
    table = CliRunner().invoke(cli_app, ["predict", str(run), inputs[0], "--explain", "--explain-method",
                                         "occlusion"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "because (#1)" in table.output and "occlusion attributions to the top label" in table.output
    refused = CliRunner().invoke(cli_app, ["predict", str(run), inputs[0], "--explain-method", "shap"])
    assert refused.exit_code != 0 and "--explain-method is for --explain" in refused.output


@pytest.mark.parametrize("task", ["text-cls", "image-cls", "audio-cls"])
def test_a_finished_run_shows_how_it_decides_in_its_card(serve_runs, task):
    # The fixture's runs leave --explain-card at its default: within the time allowed, the first example at least.
    run = serve_runs(task)
    record = json.loads((run / "zoo_run.json").read_text())
    section = record["how_it_decides"]
    card = (run / "README.md").read_text()
    assert section["rule"].startswith("default") and section["examples"] and "## How it decides" in card
    sources = val_inputs(run, 100)
    confusion = record["metrics"]["best"]["confusion"]
    assert section["errors"] == sum(sum(row) for row in confusion) - sum(row[i] for i, row in enumerate(confusion))
    for entry in section["examples"]:
        assert (entry["predicted"] in entry["true"]) == (entry["kind"] == "correct")
        assert entry["completeness_error"] is not None and f"`{entry['input']}`" in card
        if task == "text-cls":   # the text itself, its top words in bold
            assert entry["text"] in sources and f"**{entry['top'][0]['name']}**" in card
        else:                    # a validation file, drawn beside the card and shown in it
            assert any(source.endswith(entry["input"]) for source in sources)
            assert (run / entry["file"]).stat().st_size > 0 and f"]({entry['file']})" in card
            assert entry["file"] in record["files"]


def test_explain_card_explains_both_kinds_and_the_words_of_each_class(hub, datasets, tmp_path):
    record = api.adapt("tiny-bert", str(datasets["text-cls"]), output=tmp_path / "run", val_fraction=0.25,
                       registry_files=[str(FIXTURE_REGISTRY)], store=False,
                       config=AdaptConfig(strategy="linear", epochs=1, batch_size=8, explain_card=2))
    section = record["how_it_decides"]
    kinds = [entry["kind"] for entry in section["examples"]]
    wrong = section["predictions"]["wrong"]
    assert wrong > 0 and kinds.count("correct") == 2 and kinds.count("wrong") == min(2, wrong)
    assert section["rule"] == "set with --explain-card" and section["budget_s"] is None
    assert record["command"][record["command"].index("--explain-card") + 1] == "2"
    assert set(section["class_words"]) <= set(record["labels"])
    assert all(found["words"] and found["texts"] >= 1 for found in section["class_words"].values())
    card = (tmp_path / "run" / "README.md").read_text()
    decides = card.split("## How it decides", 1)[1].split("\n## ", 1)[0]
    pair = section["confusion_pairs"][0]
    assert "### Most confident and wrong" in decides and "### Words that push towards each class" in decides
    assert f"| {pair['true']} | {pair['predicted']} | {pair['count']} |" in decides
    assert decides.count("\n> ") == len(kinds)   # each text, quoted


def test_a_failure_to_explain_leaves_the_run_sound(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import numpy as np
    import torch

    from zoo.engine import run as engine_run
    from zoo.engine.trainer import Reporter
    from zoo.errors import InvalidInputError

    def failing(classifier, examples, probabilities, targets, *, run_dir, **options):
        (run_dir / "how_it_decides").mkdir()
        (run_dir / "how_it_decides" / "01-correct-a.png").write_bytes(b"half")
        raise RuntimeError("no gradients here")

    monkeypatch.setattr(engine_run, "how_it_decides", failing)
    classifier = SimpleNamespace(model=torch.nn.Linear(1, 2))
    splits = SimpleNamespace(val=[], multi_label=False)
    logits = np.zeros((2, 2), dtype=np.float32)
    for explain_card, written in ((0, False), (None, True)):
        record = {"wall_s": 4.0, "metrics": {"best": {}}}
        files = engine_run._how_it_decides(classifier, splits, AdaptConfig(explain_card=explain_card), record,
                                           tmp_path, np.zeros(2), logits, device="cpu", reporter=Reporter())
        assert files == [] and "how_it_decides" not in record and not (tmp_path / "how_it_decides").exists()
        assert ("no gradients here" in " ".join(record.get("notes", []))) == written
    with pytest.raises(InvalidInputError, match="--explain-card"):
        AdaptConfig(explain_card=51)
