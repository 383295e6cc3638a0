"""What `zoo serve` serves: a finished run (torch) or an export folder (onnxruntime), loaded once, with its name,
its facts, and the way one raw input becomes a preprocessed item.

Reading and preprocessing are the ones `zoo predict` uses (:meth:`zoo.tasks.Task.read_input`, the family's
``preprocess``), and so is scoring (:func:`zoo.engine.predict.score_items`), so a served answer is `zoo predict`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.better.ensembled import EXPLAIN_REFUSAL, is_ensemble_dir
from zoo.compare import main_metric
from zoo.engine.predict import score_items, top_labels
from zoo.errors import InvalidInputError
from zoo.export.runtime import OnnxClassifier, is_export_dir, read_export_record
from zoo.loading import load_saved
from zoo.runs.record import read_finished_record
from zoo.tasks import Task, get_task

BACKENDS = ("auto", "torch", "onnx")
# The folder `zoo export RUN` writes by default: what --backend onnx serves of a run.
RUN_EXPORT = "onnx"


@dataclass(frozen=True)
class Target:
    """What a TARGET names once resolved: the folder to load, its backend, and the model's public name."""

    directory: Path       # a run folder (torch) or an export folder (onnx)
    backend: str          # "torch" or "onnx"
    name: str             # the run folder's name: the model's name on /v2/models/NAME


def resolve_target(target: str | Path, backend: str = "auto") -> Target:
    """Which folder serves ``target`` (a finished run or an export folder) with ``backend`` (auto: onnx for an
    export folder, torch for a run; onnx for a run is its ``onnx/`` export). Reads records only, loads no model.

    Raises:
        zoo.errors.InvalidInputError: not a finished run nor an export folder, or no export for --backend onnx.
    """
    path = Path(target)
    if is_export_dir(path):
        if backend == "torch":
            raise InvalidInputError(f"{target}: an export folder runs with --backend onnx (or auto); to serve "
                                    "with torch, give the run it was exported from")
        record = read_export_record(path)
        return Target(path, "onnx", str((record.get("run") or {}).get("name") or path.resolve().name))
    read_finished_record(path)   # a finished run with finite weights, or a one-line reason
    if backend == "onnx":
        if not is_export_dir(path / RUN_EXPORT):
            raise InvalidInputError(f"{target}: --backend onnx serves the run's ONNX export, and it has none; "
                                    f"run 'zoo export {target}' first, or use --backend torch")
        return Target(path / RUN_EXPORT, "onnx", path.resolve().name)
    return Target(path, "torch", path.resolve().name)


@dataclass
class ServedModel:
    """A loaded model and what the server says about it."""

    target: Target
    classifier: Any             # a family's Classifier, or an OnnxClassifier: what predict's loop reads
    record: dict[str, Any]      # the run record (torch) or the export record (onnx)
    max_seconds: float          # audio is cut to this, as in training
    precision: str              # the forward pass's precision on a GPU (a CPU runs fp32)
    # Loads another copy of the classifier (torch only; None for onnx, which has no gradients): the explainer's.
    load_copy: Callable[[], Any] | None = None
    # What /explain answers when there is no copy to explain with (load_copy None).
    no_explain: str = ("this server runs an ONNX export (onnxruntime), which has no gradients to explain with; "
                       "serve the run it was exported from to explain (--backend torch)")

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def task(self) -> Task:
        return get_task(self.classifier.task)

    @property
    def labels(self) -> list[str]:
        return list(self.classifier.labels)

    def read(self, value: str | bytes, *, name: str) -> dict[str, Any]:
        """One input (a text, or a file's bytes) preprocessed as `zoo predict` preprocesses it.

        Raises:
            zoo.errors.InvalidInputError: an input that cannot be decoded or is empty, named by ``name``.
        """
        return self.classifier.preprocess(self.example(value, name=name))

    def example(self, value: str | bytes, *, name: str) -> Any:
        """One input (a text, or a file's bytes) read as `zoo predict` reads it, before preprocessing: what the
        family's ``preprocess`` takes, and what an explanation explains.

        Raises:
            zoo.errors.InvalidInputError: an input that cannot be decoded or is empty, named by ``name``.
        """
        task = self.task
        if isinstance(value, bytes):
            value = task.read_bytes(value, name=name, sample_rate=self.classifier.sample_rate,
                                    max_seconds=self.max_seconds)
        if isinstance(value, str):
            if task.input_kind != "text":
                raise InvalidInputError(f"{name}: this model takes {task.input_kind} files, sent as their bytes")
            if not value.strip():
                raise InvalidInputError(f"{name}: the text is empty")
        return task.read_input(value, sample_rate=self.classifier.sample_rate, max_seconds=self.max_seconds)

    def score(self, items: list[dict[str, Any]]):
        """The probabilities of preprocessed ``items`` in one batch (one row each)."""
        return score_items(self.classifier, items, precision=self.precision)

    def top_labels(self, row, top_k: int) -> list[dict[str, Any]]:
        return top_labels(self.classifier, row, top_k)

    def facts(self) -> dict[str, Any]:
        """What the model card would say: task, labels, backbone, and the run's metrics."""
        record = self.record
        if self.target.backend == "onnx":
            run = record.get("run") or {}
            metrics = {run["metric"]: run["value"]} if run.get("metric") and run.get("value") is not None else {}
            backbone = record.get("backbone")
        else:
            best = (record.get("metrics") or {}).get("best") or {}
            metrics = {key: value for key, value in best.items() if isinstance(value, (int, float))}
            metric = main_metric(record) if best else None
            metrics = {**({metric: metrics[metric]} if metric in metrics else {}), **metrics}   # main one first
            backbone = (record.get("backbone") or {}).get("name")
        return {"task": self.classifier.task, "labels": self.labels, "multi_label": bool(self.classifier.multi_label),
                "backbone": backbone, "backend": self.target.backend, "metrics": metrics,
                "explainable": self.load_copy is not None}


def load_served(target: Target, *, families) -> ServedModel:
    """Load the model ``target`` names, on the CPU.

    Raises:
        zoo.errors.InvalidInputError, zoo.errors.ModelLoadError: as loading a run or an export does.
    """
    if target.backend == "onnx":
        classifier = OnnxClassifier(target.directory, families=families)
        record = classifier.record
        return ServedModel(target, classifier, record, float(record.get("max_seconds", 10.0)), "fp32")
    record = read_finished_record(target.directory).to_dict()
    config = record.get("config", {})
    classifier = load_saved(target.directory, families)
    ensemble = is_ensemble_dir(target.directory)   # explained member by member, never as one model
    return ServedModel(target, classifier, record, float(config.get("max_seconds", 10.0)),
                       record.get("precision_used") or config.get("precision", "fp32"),
                       load_copy=None if ensemble else lambda: load_saved(target.directory, families),
                       **({"no_explain": EXPLAIN_REFUSAL} if ensemble else {}))
