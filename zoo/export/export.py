"""`zoo export RUN`: trace, quantize, prove parity, and lay out a folder that runs without zoo or torch.

The folder is built beside its destination and moved into place only when every gate passed, so an export that
failed leaves nothing that looks usable, and an earlier export of the same name stays until the new one is whole.
"""

from __future__ import annotations

import functools
import math
import os
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zoo import jsonio, loading
from zoo.better.ensembled import EXPORT_REFUSAL, is_ensemble_dir
from zoo.compare import main_metric
from zoo.data import load_scored
from zoo.data.base import Example
from zoo.errors import ExportError, InvalidInputError
from zoo.export.card import export_card
from zoo.export.graph import DEFAULT_OPSET, to_onnx, trace_batch
from zoo.export.parity import FP32_RELATIVE_TOLERANCE, Parity, judge
from zoo.export.quantize import quantize
from zoo.export.runtime import (
    EXPORT_RECORD,
    MODEL_FILE,
    ORT_TYPES,
    is_export_dir,
    model_size_mb,
    open_session,
    ort_forward,
)
from zoo.runs.record import read_finished_record
from zoo.tasks import get_task

QUANTIZE_CHOICES = ("none", "dynamic", "static", "auto")
FORMATS = ("onnx",)
EXPORT_VERSION = 1
MAX_CHECK_EXAMPLES = 1000       # parity on at most this many examples (a seeded sample of larger sets)
SYNTHETIC_EXAMPLES = 4
CHECK_BATCH = 16


@dataclass
class ExportResult:
    """What `zoo export` made: the folder, and its record (the content of zoo_export.json)."""

    directory: Path
    record: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), **self.record}


def default_output(run_dir: Path, quantization: str) -> Path:
    """Where an export goes when -o is not given: ``RUN/onnx``, or ``RUN/onnx-int8`` for an int8 model."""
    return run_dir / ("onnx" if quantization == "none" else "onnx-int8")


def export_run(run_dir: Path, *, families, output: Path | None = None, opset: int = DEFAULT_OPSET,
               quantization: str = "none", calib: int = 100, check: str | None = None,
               progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export the finished run in ``run_dir`` to ONNX (int8 with ``quantization``), check it against the torch
    model on ``check`` data (default: the run's validation split), and write the folder.

    Raises:
        zoo.errors.InvalidInputError: not a finished run, an output that is not an export folder, unreadable data.
        zoo.errors.ExportError: the export failed, or failed its parity gate (the figures are in the message).
    """
    say = progress or (lambda message: None)
    record = read_finished_record(run_dir).to_dict()
    if is_ensemble_dir(run_dir):
        raise InvalidInputError(f"{run_dir}: {EXPORT_REFUSAL}")
    output = Path(output) if output is not None else default_output(run_dir, quantization)
    _check_output(output, run_dir)
    say("loading the run's model")
    classifier = loading.load_saved(run_dir, families)
    classifier.model.to("cpu").float().eval()
    family = families[record["backbone"]["family"]] if record["backbone"]["family"] in families else \
        loading.saved_family(run_dir, families)
    method, reason = _quantization_method(quantization, classifier)
    max_seconds = record.get("config", {}).get("max_seconds", 10.0)
    say(f"reading {'--check ' + check if check else 'the run' + chr(39) + 's validation split'}")
    # The run's data is read at most once, for the parity check and static calibration alike.
    alternative = " and ".join([*([] if check else ["--check DATA"]), *(
        ["--quantize dynamic (static calibrates on the run's training data)"] if method == "static" else [])])
    run_splits = functools.cache(lambda: _run_splits(record, alternative))
    examples, targets_known, source = _check_examples(check, classifier, run_splits)
    calibration_examples = _calibration_examples(run_splits, calib) if method == "static" else []

    dataset = _dataset(classifier, examples, max_seconds)
    say(f"running the torch model on {len(examples)} examples of {source}")
    targets, reference = _outputs(classifier.forward, classifier, dataset)

    work = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        say("exporting to ONNX")
        fp32_path = work / ("fp32.onnx" if method else MODEL_FILE)
        graph = to_onnx(classifier, _trace_batch(classifier, dataset), fp32_path, opset=opset)
        say("checking the fp32 model against torch")
        fp32_parity = _parity(fp32_path, dataset, reference, targets if targets_known else None, classifier,
                              quantized=False, source=source)
        if fp32_parity.relative_diff > FP32_RELATIVE_TOLERANCE and math.isfinite(fp32_parity.max_abs_diff):
            say("the logits differ by more than 1e-4: checking both models against float64")
            fp32_parity = _parity(fp32_path, dataset, reference, targets if targets_known else None, classifier,
                                  quantized=False, source=source, exact=_float64_outputs(classifier, dataset))
        if not fp32_parity.passed:
            raise ExportError(f"the ONNX model does not match the run's model ({'; '.join(fp32_parity.failures)}) "
                              f"{fp32_parity.summary()}; nothing was written")
        parities = {"fp32": fp32_parity}
        quantization_details: dict[str, Any] = {"method": "none"}
        if method:
            say(f"quantizing to int8 ({method})")
            calibration = _calibration_batches(classifier, calibration_examples, fp32_path, max_seconds)
            quantization_details = quantize(fp32_path, work / MODEL_FILE, method, calibration=calibration)
            quantization_details.update(reason=reason, calibration_examples=len(calibration_examples) or None)
            say("checking the int8 model against torch")
            int8_parity = _parity(work / MODEL_FILE, dataset, reference, targets if targets_known else None,
                                  classifier, quantized=True, source=source)
            parities["int8"] = int8_parity
            if not int8_parity.passed:
                raise ExportError(f"the {method} int8 model fails the agreement gate "
                                  f"({'; '.join(int8_parity.failures)}) {int8_parity.summary()}; nothing was "
                                  f"written. {_int8_advice(method)}")
            for leftover in (fp32_path, fp32_path.with_name(fp32_path.name + ".data")):
                leftover.unlink(missing_ok=True)
        say("writing the folder")
        files = [path.name for path in classifier.export_files(work)]
        export_record = _record(record, run_dir, classifier, graph, quantization_details, parities, files, work,
                                family_name=family.name if family else record["backbone"]["family"])
        (work / EXPORT_RECORD).write_text(jsonio.dumps(export_record, indent=2))
        snippet = family.onnx_snippet(task=classifier.task, where="PATH", multi_label=classifier.multi_label,
                                      example=get_task(classifier.task).snippet_input) if family else ""
        (work / "README.md").write_text(export_card(export_record, snippet))
        _move_into_place(work, output)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(output, export_record)


# --- what to check on -------------------------------------------------------------------------------------------


def _check_examples(check: str | None, classifier, run_splits) -> tuple[list[Example], bool, str]:
    """The examples parity is measured on, whether their labels are known, and what they are, in words.
    ``run_splits()`` reads the run's own data."""
    if check is not None:
        examples, _ = load_scored(check, task=classifier.task, labels=classifier.labels,
                                  multi_label=classifier.multi_label)
        return _sample(examples), True, f"--check {check}"
    splits = run_splits()
    if splits.val:
        return _sample(splits.val), True, "the run's validation split"
    task = get_task(classifier.task)
    inputs = task.example_inputs(SYNTHETIC_EXAMPLES)
    return ([Example(value, (0,), f"synthetic {i}") for i, value in enumerate(inputs)], False,
            "synthetic inputs (the run has no validation split)")


def _run_splits(record: dict[str, Any], alternative: str):
    """The run's data, read again as the run read it (the same request and seed), unchanged since.

    Raises:
        zoo.errors.InvalidInputError: it cannot be read, or changed; the message says to give ``alternative``.
    """
    from zoo.engine.run import AdaptRequest

    request = AdaptRequest(**record["request"])
    try:
        splits = request.read_data(seed=record.get("seed", 0))
    except InvalidInputError as exc:
        raise InvalidInputError(f"the run's data cannot be read again ({exc}); give {alternative}") from None
    if splits.fingerprint != record.get("data", {}).get("fingerprint", splits.fingerprint):
        raise InvalidInputError(f"{request.data}: the run's data changed since it was trained; give {alternative}")
    return splits


def _sample(examples: list[Example]) -> list[Example]:
    if len(examples) <= MAX_CHECK_EXAMPLES:
        return examples
    return random.Random(0).sample(examples, MAX_CHECK_EXAMPLES)


def _calibration_examples(run_splits, count: int) -> list[Example]:
    """``count`` training examples of the run (a seeded sample), for static quantization's activation ranges."""
    train = list(run_splits().train)
    return train if len(train) <= count else random.Random(0).sample(train, count)


def _quantization_method(quantization: str, classifier) -> tuple[str | None, str]:
    if quantization == "none":
        return None, ""
    if quantization == "auto":
        method, reason = classifier.int8_method()
        return method, f"auto: {reason}"
    return quantization, f"chosen with --quantize {quantization}"


def _int8_advice(method: str) -> str:
    other = "static (calibrated, --calib N)" if method == "dynamic" else "dynamic"
    return f"Try --quantize {other.split()[0]}, or ship the fp32 export (--quantize none)"


# --- running both models ----------------------------------------------------------------------------------------


def _dataset(classifier, examples: list[Example], max_seconds: float):
    from zoo.engine.batches import ExampleDataset

    return ExampleDataset(examples, classifier, train=False, max_seconds=max_seconds,
                          num_labels=len(classifier.labels), multi_label=classifier.multi_label)


def _outputs(forward, classifier, dataset):
    from zoo.engine.batches import collect_outputs, make_collate

    return collect_outputs(forward, dataset, batch_size=CHECK_BATCH, device="cpu",
                           collate=make_collate(classifier, classifier.multi_label))


def _parity(path: Path, dataset, reference, targets, classifier, *, quantized: bool, source: str,
            exact=None) -> Parity:
    session = open_session(path)
    _, exported = _outputs(ort_forward(session), classifier, dataset)
    return judge(reference, exported, targets, classifier.labels, multi_label=classifier.multi_label,
                 quantized=quantized, data=source, exact=exact)


def _float64_outputs(classifier, dataset):
    """The torch model's logits computed in float64 (the model converted and back: float32 -> float64 -> float32
    is exact)."""
    import torch

    def forward(batch):
        return classifier.forward({name: value.double() if torch.is_floating_point(value) else value
                                   for name, value in batch.items()})

    classifier.model.double()
    try:
        return _outputs(forward, classifier, dataset)[1]   # float64 logits rounded once to float32
    finally:
        classifier.model.float()


def _trace_batch(classifier, dataset) -> dict[str, Any]:
    items = [dataset[i] for i in range(min(len(dataset), 8))]
    for item in items:
        item.pop("_target", None)
    return trace_batch(classifier, items)


def _calibration_batches(classifier, examples: list[Example], model_path: Path,
                         max_seconds: float) -> Iterator[dict[str, Any]]:
    """Batches of calibration inputs as the exported model takes them (numpy, by input name)."""
    import numpy as np

    from zoo.engine.batches import Parts, collate_by_key

    if not examples:
        return iter(())
    declared = {item.name: ORT_TYPES.get(item.type, "float32") for item in open_session(model_path).get_inputs()}
    dataset = _dataset(classifier, examples, max_seconds)
    batches = []
    for start in range(0, len(dataset), 8):
        items = [dataset[i] for i in range(start, min(start + 8, len(dataset)))]
        for item in items:
            item.pop("_target", None)
        collated = collate_by_key(classifier, items)
        for batch in ([part for part, _ in collated.parts] if isinstance(collated, Parts) else [collated]):
            batches.append({name: np.asarray(batch[name]).astype(dtype) for name, dtype in declared.items()})
    return iter(batches)


# --- the folder -------------------------------------------------------------------------------------------------


def _check_output(output: Path, run_dir: Path) -> None:
    """An output folder may be new or an earlier export (replaced); anything else is refused before work starts."""
    if output.exists() and not output.is_dir():
        raise InvalidInputError(f"-o {output}: is a file; give a folder for the export")
    if output.is_dir() and any(output.iterdir()) and not is_export_dir(output):
        raise InvalidInputError(f"-o {output}: a folder that holds other files; give a new folder (an earlier "
                                "export is replaced)")
    if output.resolve() == Path(run_dir).resolve():
        raise InvalidInputError(f"-o {output}: is the run's own folder; give a folder inside or beside it")
    for parent in output.parents:
        if parent.exists() and not parent.is_dir():
            raise InvalidInputError(f"-o {output}: {parent} is a file")


def _move_into_place(work: Path, output: Path) -> None:
    """Put the finished folder at ``output``, replacing an earlier export only once the new one is whole."""
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}"
        os.replace(output, old)
        os.replace(work, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, output)


def _record(run: dict[str, Any], run_dir: Path, classifier, graph, quantization: dict[str, Any],
            parities: dict[str, Parity], files: list[str], work: Path, *, family_name: str) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    model = onnx.load(str(work / MODEL_FILE), load_external_data=False)

    def shape(value) -> list[Any]:
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    metric = main_metric(run)
    score = (run.get("metrics", {}).get("best") or {}).get(metric)
    return {
        "zoo_export_version": EXPORT_VERSION,
        "format": "onnx",
        "file": MODEL_FILE,
        "task": classifier.task,
        "labels": list(classifier.labels),
        "multi_label": bool(classifier.multi_label),
        "max_seconds": run.get("config", {}).get("max_seconds", 10.0),   # audio: clips are cut to this, as in training
        "family": family_name,
        "backbone": run["backbone"]["name"],
        "run": {"name": Path(run_dir).resolve().name, "strategy": run.get("strategy"),
                "metric": metric, "value": score},
        "exporter": graph.exporter,
        "exporter_notice": graph.notice,
        "opset": next((item.version for item in model.opset_import if item.domain in ("", "ai.onnx")), graph.opset),
        "inputs": [{"name": value.name, "shape": shape(value)} for value in model.graph.input],
        "outputs": [{"name": value.name, "shape": shape(value)} for value in model.graph.output],
        "dynamic_axes": graph.dynamic_axes,
        "precision": "int8" if quantization.get("method") != "none" else "fp32",
        "quantization": quantization,
        "parity": {name: parity.to_dict() for name, parity in parities.items()},
        "size_mb": model_size_mb(work),
        "files": sorted({MODEL_FILE, EXPORT_RECORD, "README.md", *files}),
        "versions": {"torch": torch.__version__.split("+")[0], "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "created_at": datetime.now(UTC).isoformat(),
    }
