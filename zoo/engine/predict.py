"""Classifying inputs with a loaded classifier: `zoo predict`'s loop.

Each input is read as its task reads it (:meth:`zoo.tasks.Task.read_input`), preprocessed by the family, and
scored in batches under inference mode, on the device the model is on and, on a GPU, under the autocast of the
run's precision (:mod:`zoo.precision`; fp32 on a CPU); items the family may not pad against each other run apart,
so an input's scores never depend on what else is in its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zoo.explain.attribute import Explanation
from zoo.precision import autocast, resolve_precision
from zoo.tasks import get_task

# How many units (words, regions, stretches of time) `zoo predict --explain` lists as the reasons for a label.
BECAUSE_TOP = 3


@dataclass
class Prediction:
    input: str
    labels: list[dict[str, float]]     # [{"label": name, "score": probability}], best first
    explanation: Explanation | None = None   # why the top label, when asked (`zoo predict --explain`)

    def because(self) -> list[dict[str, Any]]:
        """The units that pushed most towards the top label, best first: ``[{"name", "attribution"}]``."""
        if self.explanation is None:
            return []
        return [{"name": unit.name, "attribution": unit.attribution}
                for unit in self.explanation.top(BECAUSE_TOP)]

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"input": self.input, "labels": self.labels}
        if self.explanation is not None:
            e = self.explanation
            found["because"] = self.because()
            found["explanation"] = {"label": e.label, "method": e.method, "steps": e.steps,
                                    "completeness_error": e.completeness_error, "seconds": e.seconds,
                                    "warnings": e.warnings}
        return found


def predict_inputs(classifier, inputs: Sequence[Any], *, top_k: int = 5, batch_size: int = 32,
                   max_seconds: float = 10.0, precision: str = "fp32") -> list[Prediction]:
    """The ``top_k`` labels of each input with their probabilities (softmax, or sigmoid for multi-label models);
    audio clips are cut to ``max_seconds``. On a GPU the forward pass runs in ``precision`` (the run's, ``auto``
    resolved for the GPU); on a CPU in fp32.

    Raises:
        zoo.errors.InvalidInputError: an input that cannot be read (named).
    """
    task = get_task(classifier.task)
    results: list[Prediction] = []
    for start in range(0, len(inputs), batch_size):
        chunk = list(inputs[start:start + batch_size])
        items = [classifier.preprocess(task.read_input(value, sample_rate=classifier.sample_rate,
                                                       max_seconds=max_seconds)) for value in chunk]
        scores = score_items(classifier, items, precision=precision)
        results.extend(Prediction(str(value), top_labels(classifier, row, top_k))
                       for value, row in zip(chunk, scores, strict=True))
    return results


def score_items(classifier, items: Sequence[dict[str, Any]], *, precision: str = "fp32"):
    """The probabilities (a float32 tensor, one row per item, one column per label) of preprocessed ``items``, in
    one batch: softmax, or sigmoid for multi-label models. Items the family may not pad against each other run
    apart (:func:`zoo.engine.batches.collate_by_key`), so an item's scores never depend on its batch-mates. What
    `zoo predict` and the server both score with."""
    import torch

    from zoo.engine.batches import collate_by_key, run_forward, to_device

    # Where the model's weights are (an ONNX model's live in its session: its inputs stay on the CPU).
    device = next(classifier.model.parameters(), torch.empty(0)).device
    in_precision = autocast(resolve_precision(precision, device) if device.type == "cuda" else "fp32", device)
    classifier.model.eval()
    with torch.inference_mode(), in_precision():
        logits = run_forward(classifier.forward, to_device(collate_by_key(classifier, items), device)).float()
    return (torch.sigmoid(logits) if classifier.multi_label else logits.softmax(-1)).cpu()


def top_labels(classifier, scores, top_k: int) -> list[dict[str, Any]]:
    """The ``top_k`` best labels of one row of :func:`score_items`, best first: ``[{"label", "score"}]``."""
    import torch

    best = torch.topk(scores, min(top_k, len(classifier.labels)))
    return [{"label": classifier.labels[i], "score": round(float(s), 6)}
            for s, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)]
