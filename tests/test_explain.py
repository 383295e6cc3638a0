"""zoo explain: attributions per modality, the completeness check, the files drawn, the CLI's output and errors;
the model card's "How it decides"."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import FIXTURE_REGISTRY, val_inputs
from typer.testing import CliRunner

from zoo import api
from zoo.cli import app as cli_app
from zoo.engine.config import AdaptConfig
from zoo.explain.attribute import explain_example
from zoo.registry import read_registry_file


@pytest.mark.parametrize("task", ["text-cls", "image-cls", "audio-cls"])
def test_explain_cli_draws_each_modality(serve_runs, task, tmp_path):
    run = serve_runs(task)
    inputs = val_inputs(run, 2)
    # In-process: starting the CLI three more times would cost more than the explanations.
    result = CliRunner().invoke(cli_app, ["explain", str(run), *inputs, "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
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
    shown = CliRunner().invoke(cli_app, ["explain", str(run), inputs[0], "-o", str(tmp_path), "--method",
                                         "occlusion"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    label = explanations[0]["label"]
    assert f"-> {label}" in shown.output and "occlusion" in shown.output and "towards it:" in shown.output
    assert "wrote " in shown.output and f".{label}.occlusion." in shown.output


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


# --- honesty: a model trained on a planted signal attributes to it, a random one does not -------------------------
#
# Each task's class is decided by a signal in a known place: the colour of a patch in an image's top-left quarter, a
# trigger word in a sentence, the pitch of a tone in a clip's first half; a third class, "none", has no signal. So
# the baseline, which has none either, is "none" to a trained model, and explaining a signal class explains a real
# change. Everything else is drawn alike for every class and varies (noise from none to as loud as the patch, three to
# seven neutral words, a tone of another pitch in the second half from silent to as loud as the first), so that a
# trained model learns to ignore it; the probes hold the most of it.

PLANTED_SIZE = 32           # image side; the patch lies in the top-left quarter
PATCH = slice(2, 14)
COLOURS = {"red": (230, 30, 30), "blue": (30, 30, 230)}
TRIGGERS = ("cat", "dog")   # the words that decide a text's class
NEUTRAL = "the a movie film was is it this very not service food slow fast ok yes no".split()
RATE, CLIP_S = 16000, 0.4   # clips; the class tone fills the first half, four stretches of 0.1 s
PITCHES = {"low": 300.0, "high": 2000.0}
SIGNALS = {"image-cls": COLOURS, "text-cls": {word: word for word in TRIGGERS}, "audio-cls": PITCHES}


def planted_image(colour, rng, loudness: float):
    """Grey with noise ``loudness`` strong, and a patch of ``colour`` (None: none) in the top-left quarter."""
    from PIL import Image

    noise = rng.uniform(-128, 128, (PLANTED_SIZE, PLANTED_SIZE, 3)) * loudness
    pixels = np.clip(128 + noise, 0, 255).astype(np.uint8)
    if colour is not None:
        pixels[PATCH, PATCH] = colour
    return Image.fromarray(pixels)


def planted_text(trigger, rng, loudness: float) -> str:
    """Three to seven neutral words (more the louder), and ``trigger`` (None: none) among them."""
    words = [rng.choice(NEUTRAL) for _ in range(3 + round(4 * loudness))] + ([trigger] if trigger else [])
    rng.shuffle(words)
    return " ".join(words)


def planted_clip(pitch, rng, loudness: float):
    """A tone at ``pitch`` (None: none) in the first half; one of another pitch, ``loudness`` times as loud, in the
    second; a little noise throughout."""
    half = int(RATE * CLIP_S / 2)
    t = np.arange(half) / RATE
    amplitude, phase = rng.uniform(0.4, 0.8), rng.uniform(0, 2 * np.pi)
    first = amplitude * np.sin(2 * np.pi * pitch * t + phase) if pitch is not None else np.zeros(half)
    second = loudness * amplitude * np.sin(2 * np.pi * rng.uniform(600, 1200) * t + rng.uniform(0, 2 * np.pi))
    wave = np.concatenate([first, second]) + rng.normal(0, 0.03, 2 * half)
    return np.clip(wave, -1, 1).astype(np.float32)


PLANTERS = {"image-cls": planted_image, "text-cls": planted_text, "audio-cls": planted_clip}


def write_planted(task: str, root, per_class: int):
    """The planted task's training data under ``root``: a folder of class folders, or a CSV of texts."""
    import csv

    import soundfile

    rng = random.Random(0) if task == "text-cls" else np.random.default_rng(0)
    plant = PLANTERS[task]
    classes = {**SIGNALS[task], "none": None}
    if task == "text-cls":
        rows = [(plant(signal, rng, rng.random()), name) for name, signal in classes.items() for _ in range(per_class)]
        with open(root / "texts.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("text", "label"), *rows])
        return root / "texts.csv"
    for name, signal in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            example = plant(signal, rng, rng.uniform(0, 1))
            if task == "image-cls":
                example.save(root / name / f"{i:03d}.png")
            else:
                soundfile.write(str(root / name / f"{i:03d}.wav"), example, RATE)
    return root


def planted_probes(task: str, count: int = 2) -> list[tuple[str, object]]:
    """``count`` unseen inputs of each signal class, each with its class name, with the most beside the signal that
    the training data has."""
    rng = random.Random(1) if task == "text-cls" else np.random.default_rng(1)
    return [(name, PLANTERS[task](signal, rng, 1.0)) for _ in range(count) for name, signal in SIGNALS[task].items()]


def signal_share(task: str, explanation) -> float:
    """The share of |attribution| that falls on the units where the signal was planted."""
    mass = np.array([abs(u.attribution) for u in explanation.units])
    if task == "image-cls":   # the regions inside the top-left quarter
        inside = [u.span[2] <= PLANTED_SIZE / 2 and u.span[3] <= PLANTED_SIZE / 2 for u in explanation.units]
    elif task == "text-cls":
        inside = [u.name in TRIGGERS for u in explanation.units]
    else:                     # the stretches of the first half
        inside = [u.span[1] <= CLIP_S / 2 + 1e-6 for u in explanation.units]
    return float(mass[np.array(inside)].sum() / mass.sum())


PLANTED = {  # task: backbone, examples per class, training options
    "image-cls": ("test_resnet.r160_in1k", 16, {"epochs": 8, "lr": 1e-2, "image_size": PLANTED_SIZE}),
    "text-cls": ("tiny-bert", 80, {"epochs": 12, "lr": 3e-3}),   # the trigger learnt on seeds 0, 1 and 2 alike
    "audio-cls": ("tiny-wav2vec2", 12, {"epochs": 8, "lr": 5e-3}),
}
# task: (the least mean share of the trained model, the most of the fresh one). Spread evenly, the share would be the
# quarter's area (0.25), one word's (about 1/8) and half the clip's (0.5).
BARS = {"image-cls": (0.6, 0.45), "text-cls": (0.6, 0.4), "audio-cls": (0.75, 0.7)}


@pytest.fixture(scope="module")
def planted(hub, tmp_path_factory):
    """Per task: a classifier fine-tuned (all of it) on the planted task, and a freshly initialised one."""
    from tiny_models import seeded

    from zoo.plugins import get_plugin_manager

    specs = {spec.name: spec for spec in read_registry_file(FIXTURE_REGISTRY)}
    made = {}

    def get(task: str):
        if task not in made:
            backbone, per_class, options = PLANTED[task]
            root = tmp_path_factory.mktemp(task)
            api.adapt(backbone, str(write_planted(task, root, per_class)), output=root / "run", val_fraction=0.25,
                      registry_files=[str(FIXTURE_REGISTRY)], store=False,
                      config=AdaptConfig(strategy="full", batch_size=8, patience=0, augment="none", explain_card=0,
                                         **options))
            trained = api.load_saved_classifier(root / "run")
            family = get_plugin_manager().family(specs[backbone].family)
            size = {"image_size": PLANTED_SIZE} if task == "image-cls" else {}
            with seeded(backbone, salt=1):
                fresh = family.load_classifier(specs[backbone], task=task, labels=trained.labels, pretrained=False,
                                               **size)
            made[task] = trained, fresh
        return made[task]

    return get


@pytest.mark.parametrize("task", ["image-cls", "text-cls", "audio-cls"])
def test_planted_signal_gets_most_of_the_attribution(planted, task):
    """Integrated gradients (the default, steps auto) on a model trained where the signal sits put most of the mass
    there, for every probe; on a freshly initialised model, about as much as anywhere else."""
    trained, fresh = planted(task)
    least, most = BARS[task]
    shares = {}
    for name, classifier in (("trained", trained), ("fresh", fresh)):
        shares[name] = []
        for index, (label, probe) in enumerate(planted_probes(task)):
            (explanation,) = explain_example(classifier, probe, name=f"probe {index}")
            assert explanation.method == "ig" and explanation.completeness_error is not None
            shares[name].append(signal_share(task, explanation))
            if name == "trained":
                assert explanation.label == label, f"the trained model misreads probe {index}"
                if task == "text-cls":   # the trigger is the word that counts most
                    top = max(explanation.units, key=lambda unit: abs(unit.attribution))
                    assert top.name == label, f"probe {index}: {top.name!r} counts most, not the trigger {label!r}"
    report = {name: [round(share, 3) for share in values] for name, values in shares.items()}
    assert min(shares["trained"]) > 0.5 and np.mean(shares["trained"]) > least, report
    assert np.mean(shares["fresh"]) < most, report


def test_occlusion_finds_the_patch(planted):
    """The gradient-free check agrees: hiding the top-left quarter's regions costs the trained model most."""
    trained, _ = planted("image-cls")
    for index, (label, probe) in enumerate(planted_probes("image-cls", 1)):
        (explanation,) = explain_example(trained, probe, name=f"probe {index}", method="occlusion")
        assert explanation.completeness_error is None and explanation.steps is None
        assert len(explanation.units) < explanation.evaluations <= len(explanation.units) + 3   # one pass a region
        assert explanation.label == label and signal_share("image-cls", explanation) > 0.5


def test_shap_values_add_up_exactly_and_find_the_trigger(planted):
    """SHAP's partition explainer: its values add up to f(x) - f(baseline) by construction, within its budget."""
    trained, _ = planted("text-cls")
    for index, (label, probe) in enumerate(planted_probes("text-cls", 1)):
        (explanation,) = explain_example(trained, probe, name=f"probe {index}", method="shap", max_evals=64)
        total = sum(unit.attribution for unit in explanation.units)
        assert total == pytest.approx(explanation.logit - explanation.baseline_logit, abs=1e-5)
        assert explanation.completeness_error < 1e-5 and explanation.evaluations <= 64 + 2
        assert max(explanation.units, key=lambda unit: abs(unit.attribution)).name == label


def test_targets_are_every_predicted_label_of_a_multi_label_model_or_the_label_named():
    import torch

    from zoo.errors import InvalidInputError
    from zoo.explain.attribute import targets

    class Model:
        labels, multi_label = ["billing", "refund", "spam"], True

    scores = torch.tensor([0.9, 0.6, 0.2])
    assert targets(Model, scores, "pred") == [0, 1]
    assert targets(Model, torch.tensor([0.1, 0.3, 0.2]), "pred") == [1]   # none above 0.5: the top one
    Model.multi_label = False
    assert targets(Model, scores, "pred") == [0] and targets(Model, scores, "spam") == [2]
    with pytest.raises(InvalidInputError, match="--target 'ham'"):
        targets(Model, scores, "ham")


def test_inputs_of_the_same_name_get_pictures_of_their_own(serve_runs, tmp_path):
    run = serve_runs("image-cls")
    image = val_inputs(run, 1)[0]
    twin = tmp_path / "elsewhere" / image.split("/")[-1]
    twin.parent.mkdir()
    twin.write_bytes(open(image, "rb").read())
    first, second = api.explain(run, [image, str(twin)], output=tmp_path / "out", method="occlusion")
    assert first.files != second.files and all((tmp_path / "out").joinpath(f.split("/")[-1]).is_file()
                                               for f in first.files + second.files)
