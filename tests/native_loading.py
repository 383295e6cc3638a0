"""Predictions from a saved or published model, made in a fresh process that cannot import zoo.

Only timm or transformers load the model, as a person without zoo would: timm through ``create_model`` (a
``local-dir:`` path or an ``hf-hub:`` id), transformers through ``pipeline``. Each returns, per input, a mapping of
label to probability.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPTS = {
    "timm": """
import json, sys, timm, torch
from PIL import Image
model = timm.create_model({model!r}, pretrained=True).eval()
tf = timm.data.create_transform(**timm.data.resolve_data_config({{}}, model=model))
x = torch.stack([tf(Image.open(p).convert("RGB")) for p in {inputs!r}])
with torch.no_grad():
    probs = model(x).softmax(-1)
labels = model.pretrained_cfg["label_names"]
print(json.dumps([{{l: float(p) for l, p in zip(labels, row)}} for row in probs.tolist()]))
""",
    "text-cls": """
import json
from transformers import pipeline
pipe = pipeline("text-classification", model={model!r}, top_k=None)
out = [pipe(x) for x in {inputs!r}]
out = [r[0] if r and isinstance(r[0], list) else r for r in out]
print(json.dumps([{{d["label"]: d["score"] for d in r}} for r in out]))
""",
    # A text run whose linear head reads a mean over tokens (config.json: zoo_pooling), loaded as its load note
    # says: the encoder with its hidden states, the masked mean (of the last layer, or of every hidden state
    # averaged), then the model's classifier.
    "text-cls-pooled": """
import json, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained({model!r}).eval()
tokenizer = AutoTokenizer.from_pretrained({model!r})
pooling = model.config.zoo_pooling
out = []
for text in {inputs!r}:
    batch = tokenizer(text, return_tensors="pt", truncation=True)
    with torch.no_grad():
        states = model.base_model(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"][..., None].float()
        means = [(h * mask).sum(1) / mask.sum(1) for h in states]
        pooled = means[-1] if pooling == "mean-tokens" else torch.stack(means).mean(0)
        probs = model.classifier(pooled).softmax(-1)[0]
    out.append({{model.config.id2label[i]: float(p) for i, p in enumerate(probs)}})
print(json.dumps(out))
""",
    "audio-cls": """
import json, soundfile
from transformers import pipeline
pipe = pipeline("audio-classification", model={model!r}, top_k=None)
out = []
for path in {inputs!r}:
    audio, rate = soundfile.read(path, dtype="float32")
    out.append(pipe({{"raw": audio, "sampling_rate": rate}}))
print(json.dumps([{{d["label"]: d["score"] for d in r}} for r in out]))
""",
}


def run_without_zoo(script: str, env: dict[str, str] | None = None) -> str:
    """Run ``script`` in a fresh Python process where ``import zoo`` fails; returns its standard output."""
    result = subprocess.run([sys.executable, "-c", "import sys; sys.modules['zoo'] = None\n" + script],
                            capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def native_predictions(family: str, task: str, model: str, inputs: list[str],
                       env: dict[str, str] | None = None, *, pooled: bool = False) -> list[dict[str, float]]:
    """Run the loading script for ``family``/``task`` on ``model`` in a fresh process without zoo; ``pooled``: a
    text run whose head reads a pooling transformers' head lacks, loaded as its load note says."""
    script = SCRIPTS["timm" if family == "timm" else task + ("-pooled" if pooled else "")]
    script = script.format(model=model, inputs=inputs)
    return json.loads(run_without_zoo(script, env).strip().splitlines()[-1])
