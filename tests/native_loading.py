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
                       env: dict[str, str] | None = None) -> list[dict[str, float]]:
    """Run the loading script for ``family``/``task`` on ``model`` in a fresh process without zoo."""
    script = SCRIPTS["timm" if family == "timm" else task].format(model=model, inputs=inputs)
    return json.loads(run_without_zoo(script, env).strip().splitlines()[-1])
