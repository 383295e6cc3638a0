"""zoo export: every family to ONNX fp32 and int8, parity gated, run without zoo or torch, benched and pushed."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_REGISTRY, run_zoo, val_inputs

from zoo import api
from zoo.engine.config import AdaptConfig
from zoo.errors import ExportError, InvalidInputError
from zoo.export.parity import judge
from zoo.registry import read_registry_file

FIXTURES = read_registry_file(FIXTURE_REGISTRY)
BY_NAME = {spec.name: spec for spec in FIXTURES}
REGISTRY = [str(FIXTURE_REGISTRY)]
# One backbone of each task type: every fixture backbone's export is checked by the family contract
# (zoo.testing, check "export"); these go through the whole command, its folder and the card's code.
ONE_PER_TASK = {spec.tasks[0]: spec.name for spec in reversed(FIXTURES)}
# What a fresh process runs first: neither zoo nor torch can be imported there.
WITHOUT_ZOO_OR_TORCH = "import sys\nsys.modules['zoo'] = None\nsys.modules['torch'] = None\n"


@pytest.fixture(scope="module")
def runs(hub, datasets, tmp_path_factory) -> dict[str, Path]:
    """One finished linear-probe run per fixture backbone, made on first use."""
    root = tmp_path_factory.mktemp("export-runs")
    made: dict[str, Path] = {}

    def run(spec) -> Path:
        if spec.name not in made:
            task = spec.tasks[0]
            api.adapt(spec.name, str(datasets[task]), output=root / spec.name, val_fraction=0.25,
                      registry_files=REGISTRY, config=AdaptConfig(strategy="linear", epochs=1, batch_size=8),
                      store=False)
            made[spec.name] = root / spec.name
        return made[spec.name]

    return run


@pytest.fixture(scope="module")
def exports(runs):
    """The fp32 export (RUN/onnx) of a fixture backbone's run, made on first use."""
    made: dict[str, Path] = {}

    def export(name: str) -> Path:
        if name not in made:
            made[name] = api.export(runs(BY_NAME[name])).directory
        return made[name]

    return export


def _card_snippet(export: Path) -> str:
    """The onnxruntime code of an export's card."""
    card = (export / "README.md").read_text()
    section = card.split("## Use it with onnxruntime", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _scores_without_zoo_or_torch(export: Path, example: str) -> dict[str, float]:
    """The card's code run as written, on ``example``, in a fresh process that cannot import zoo or torch."""
    script = _card_snippet(export).replace("PATH", str(export))
    for placeholder in ("example.jpg", "example.wav", "an example text to classify"):
        script = script.replace(placeholder, example)
    result = subprocess.run([sys.executable, "-c", WITHOUT_ZOO_OR_TORCH + script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


@pytest.mark.parametrize("name", sorted(ONE_PER_TASK.values()))
def test_every_task_exports_with_parity_and_runs_without_zoo_or_torch(name, runs, exports):
    run = runs(BY_NAME[name])
    labels = json.loads((run / "zoo_run.json").read_text())["labels"]
    export = exports(name)
    assert export == run / "onnx"
    record = json.loads((export / "zoo_export.json").read_text())
    assert record["precision"] == "fp32" and record["labels"] == labels and record["exporter"] in ("dynamo",
                                                                                                   "torchscript")
    fp32 = record["parity"]["fp32"]
    assert fp32["passed"] and fp32["data"] == "the run's validation split" and fp32["examples"] > 0
    assert fp32["relative_diff"] <= 1e-4 or fp32["float64"]["onnx_error"] <= 10 * fp32["float64"]["torch_fp32_error"]
    assert fp32["agreement"] == 1.0 and fp32["exported"] == pytest.approx(fp32["reference"], abs=1e-6)
    # Any batch size: the batch axis is dynamic (it was traced with two examples).
    assert record["inputs"][0]["shape"][0] == "batch"
    for name in ("model.onnx", "README.md", "config.json"):
        assert (export / name).is_file(), name
    assert not list(export.glob("*.safetensors")), "an export carries no torch weights"
    assert _leftovers(run) == []
    # The run lists its export, and its card shows how to run it.
    assert [e["dir"] for e in json.loads((run / "zoo_run.json").read_text())["exports"]] == ["onnx"]
    assert "## ONNX" in (run / "README.md").read_text()

    # zoo predict on the export scores as on the run; the card's code, without zoo or torch, too. (Scores within
    # 1e-3: the gate lets a model whose head amplifies rounding differ as much as torch's own fp32 does.)
    inputs = val_inputs(run, 3, sample_rate=16000)
    ours = api.predict(run, inputs, top_k=len(labels))
    exported = api.predict(export, inputs, top_k=len(labels))
    for mine, theirs in zip(ours, exported, strict=True):
        assert {e["label"]: e["score"] for e in theirs.labels} == pytest.approx(
            {e["label"]: e["score"] for e in mine.labels}, abs=1e-3)
    scores = _scores_without_zoo_or_torch(export, inputs[0])
    assert scores == pytest.approx({e["label"]: e["score"] for e in ours[0].labels}, abs=1e-3)

    # int8, as auto picks it: either it passes the agreement gate, or nothing that looks like an export is left.
    try:
        int8 = api.export(run, quantize="auto").record
    except ExportError as exc:
        assert "agreement" in str(exc) and "nothing was written" in str(exc)
        assert not (run / "onnx-int8").exists() and _leftovers(run) == []
        return
    parity = int8["parity"]["int8"]
    assert int8["precision"] == "int8" and parity["passed"] and parity["agreement"] >= 0.99
    assert abs(parity["reference"]["macro_f1"] - parity["exported"]["macro_f1"]) <= 0.01
    assert int8["quantization"]["method"] in ("dynamic", "static") and int8["quantization"]["reason"]
    assert int8["size_mb"] < record["size_mb"]
    assert not (run / "onnx-int8" / "fp32.onnx").exists()
    if int8["quantization"]["method"] == "static":
        assert int8["quantization"]["calibration_examples"] > 0


def _with_an_outlier_channel(run: Path) -> None:
    """Give the last encoder layer's output one channel ~10^4 times the others that nothing reads (the weights of the
    pooler and of the classifier for it are zero, whichever pooling the head reads): the fp32 model computes exactly
    what it did, but int8 activations, scaled per tensor, round every other channel of that input to zero (the
    outlier failure of int8 transformers, LLM.int8())."""
    from safetensors.torch import load_file, save_file

    path = run / "model.safetensors"
    weights = load_file(path)
    norm = max(name for name in weights if name.startswith("bert.encoder.layer.") and name.endswith(
        "output.LayerNorm.weight") and "attention" not in name)
    weights[norm][0] = 1e4
    weights[norm.replace("weight", "bias")][0] = 1e4
    weights["bert.pooler.dense.weight"][:, 0] = 0.0
    weights["classifier.weight"][:, 0] = 0.0
    save_file(weights, path, metadata={"format": "pt"})


def test_int8_that_wrecks_the_model_fails_the_gate_with_its_figures_and_leaves_nothing(runs, tmp_path):
    fragile = tmp_path / "fragile"
    shutil.copytree(runs(BY_NAME["tiny-bert"]), fragile)
    for folder in ("onnx", "onnx-int8"):
        shutil.rmtree(fragile / folder, ignore_errors=True)
    _with_an_outlier_channel(fragile)
    from typer.testing import CliRunner

    from zoo.cli import app

    failed = CliRunner().invoke(app, ["export", str(fragile), "--quantize", "dynamic"])
    assert failed.exit_code not in (0, None)
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), failed.stderr
    assert "agreement" in lines[0] and "macro_f1" in lines[0] and "nothing was written" in lines[0]
    assert not (fragile / "onnx-int8").exists() and _leftovers(fragile) == []


def test_bench_compares_a_run_with_its_exports(runs, exports, datasets):
    run = runs(BY_NAME["tiny-bert"])
    exports("tiny-bert")
    api.export(run, quantize="dynamic")
    result = run_zoo("bench", str(run), str(run / "onnx"), str(run / "onnx-int8"), "--compare", "--data",
                     str(datasets["text-cls"]), "--iters", "5", "--warmup", "1", "--batch-sizes", "1",
                     "--no-store", "--json")
    assert result.returncode == 0, result.stderr
    torch_run, fp32, int8 = json.loads(result.stdout)
    assert [r["runtime"] for r in (torch_run, fp32, int8)] == ["torch", "onnxruntime", "onnxruntime"]
    assert [r["precision"] for r in (torch_run, fp32, int8)] == ["fp32", "fp32", "int8"]
    assert [r["weights"] for r in (torch_run, fp32, int8)] == ["adapted", "exported", "exported"]
    assert int8["size_mb"] < fp32["size_mb"] and torch_run["size_mb"] > 0
    assert fp32["accuracy"]["accuracy"] == torch_run["accuracy"]["accuracy"]
    for r in (fp32, int8):
        assert r["latency_ms"]["p50"] > 0 and r["params_m"] > 0 and "onnxruntime" in r["fingerprint"]
    from typer.testing import CliRunner

    from zoo.cli import app

    table = CliRunner().invoke(app, ["bench", str(run / "onnx"), "--iters", "3", "--warmup", "0",
                                     "--batch-sizes", "1", "--no-store"])
    assert table.exit_code == 0 and "onnxruntime" in table.stdout and "size on disk" in table.stdout


def test_export_options_and_what_is_refused(runs, tmp_path, datasets):
    run = runs(BY_NAME["tiny-bert"])
    # Parity on other labelled data, into a folder of one's own; an earlier export there is replaced whole.
    first = api.export(run, output=tmp_path / "mine", check=str(datasets["text-cls"]), opset=18)
    assert first.record["parity"]["fp32"]["data"] == f"--check {datasets['text-cls']}"
    again = api.export(run, output=tmp_path / "mine")
    assert again.record["created_at"] != first.record["created_at"] and _leftovers(tmp_path) == []
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="holds other files"):
        api.export(run, output=tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_the_gate_judges_fp32_by_tolerance_and_int8_by_agreement():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 3)).astype(np.float32)
    targets = reference.argmax(axis=1)
    labels = ["a", "b", "c"]
    close = judge(reference, reference + 1e-6, targets, labels, multi_label=False, quantized=False, data="d")
    assert close.passed and close.agreement == 1.0
    far = judge(reference, reference + 1e-2, targets, labels, multi_label=False, quantized=False, data="d")
    assert not far.passed and "logit scale" in far.failures[0]
    # int8 is never held to a tolerance: logits 0.1 apart with the same predictions pass.
    shifted = reference + rng.normal(scale=0.01, size=reference.shape)
    assert judge(reference, shifted, targets, labels, multi_label=False, quantized=True, data="d").passed
    flipped = reference.copy()
    flipped[:10] = -flipped[:10]          # 5% of the predictions change
    bad = judge(reference, flipped, targets, labels, multi_label=False, quantized=True, data="d")
    assert not bad.passed and bad.agreement == pytest.approx(0.95) and len(bad.failures) == 2
    # Multi-label: agreement is the whole label set of an example; unlabelled data is judged by agreement alone.
    multi = judge(reference, reference, None, labels, multi_label=True, quantized=True, data="d")
    assert multi.passed and multi.reference == {} and "agreement only" in multi.gate


@pytest.fixture(scope="session")
def optimum_overlay(session_dir) -> Path:
    """optimum's ONNX Runtime models, installed apart from zoo's environment: optimum-onnx pins transformers < 4.58
    (and huggingface_hub < 1.0), so they are installed into their own folder, put first on the path of the
    process that loads the exports."""
    target = session_dir / "optimum-overlay"
    if not (target / "optimum" / "onnxruntime").is_dir():
        pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target)]
        subprocess.run([*pip, "--no-deps", "optimum-onnx==0.1.0", "optimum==2.1.0", "transformers==4.57.6",
                        "huggingface_hub==0.36.2", "tokenizers==0.22.1"], check=True, capture_output=True,
                       timeout=600)
        # What those versions need that zoo's environment may lack (huggingface_hub 0.x reads the Hub with requests).
        subprocess.run([*pip, "requests"], check=True, capture_output=True, timeout=600)
    return target


OPTIMUM_SCRIPT = """
import json, sys
import numpy as np
import soundfile
from optimum.onnxruntime import ORTModelForAudioClassification, ORTModelForSequenceClassification
from transformers import AutoFeatureExtractor, AutoTokenizer

task, folder, inputs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if task == "text-cls":
    model = ORTModelForSequenceClassification.from_pretrained(folder)
    batch = AutoTokenizer.from_pretrained(folder)(inputs, truncation=True, padding=True, return_tensors="pt")
else:
    model = ORTModelForAudioClassification.from_pretrained(folder)
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    audio = [soundfile.read(path, dtype="float32")[0] for path in inputs]
    batch = extractor(audio, sampling_rate=16000, padding=True, return_tensors="pt")
scores = model(**batch).logits.softmax(-1)
labels = model.config.id2label
print(json.dumps([{labels[i]: float(s) for i, s in enumerate(row)} for row in scores.tolist()]))
"""


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-wav2vec2"])
def test_optimum_loads_text_and_audio_exports_as_they_are(name, runs, exports, optimum_overlay):
    spec = BY_NAME[name]
    run = runs(spec)
    export = exports(name)
    inputs = val_inputs(run, 1, sample_rate=16000)   # one at a time: a batch pads, and padding is the family's business
    import os

    result = subprocess.run([sys.executable, "-c", OPTIMUM_SCRIPT, spec.tasks[0], str(export), json.dumps(inputs)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(optimum_overlay)})
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    labels = json.loads((run / "zoo_run.json").read_text())["labels"]
    ours = api.predict(run, inputs, top_k=len(labels))
    for mine, scores in zip(ours, theirs, strict=True):
        assert scores == pytest.approx({e["label"]: e["score"] for e in mine.labels}, abs=1e-4)


def test_push_uploads_the_exports_and_the_card_says_how_to_run_them(hub, runs, exports):
    hub.store.add_token("hf_zooTestTokenExporter12345678", "exporter")
    run = runs(BY_NAME["tiny-bert"])
    exports("tiny-bert")
    result = api.push(run, "exporter/tiny-bert-onnx", token="hf_zooTestTokenExporter12345678", store=False)
    sent = {f.path for f in result.files}
    assert {"onnx/model.onnx", "onnx/zoo_export.json", "onnx/README.md", "onnx/tokenizer.json"} <= sent
    card = next(f for f in result.files if f.path == "README.md")
    commit = hub.store.resolve("exporter/tiny-bert-onnx", "main")
    text = hub.store.blob_bytes(commit.files[card.path]).decode()
    assert "## ONNX" in text and "huggingface-cli download exporter/tiny-bert-onnx --include 'onnx/*'" in text
    assert "onnxruntime.InferenceSession(\"onnx/model.onnx\")" in text


def test_a_multi_label_run_exports_with_sigmoid_scores_and_label_set_agreement(hub, tmp_path):
    import data_factory as factory

    data = factory.make_text_csv(tmp_path / "multi.jsonl", per_class=20, fmt="jsonl", multi_label=True)
    run = tmp_path / "run"
    api.adapt("tiny-bert", str(data), output=run, registry_files=REGISTRY, store=False, val_fraction=0.3,
              config=AdaptConfig(strategy="linear", epochs=1, batch_size=8))
    record = api.export(run).record
    parity = record["parity"]["fp32"]
    assert record["multi_label"] and parity["passed"] and parity["agreement"] == 1.0
    assert set(parity["reference"]) == {"subset_accuracy", "micro_f1", "macro_f1"}
    assert "sigmoid" in (run / "onnx" / "README.md").read_text()
    ours = api.predict(run, ["great movie", "awful slow service"], top_k=10)
    exported = api.predict(run / "onnx", ["great movie", "awful slow service"], top_k=10)
    for mine, theirs in zip(ours, exported, strict=True):
        assert {e["label"]: e["score"] for e in theirs.labels} == pytest.approx(
            {e["label"]: e["score"] for e in mine.labels}, abs=1e-4)
