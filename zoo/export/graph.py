"""Tracing a classifier into an ONNX file: the dynamo exporter first, the TorchScript exporter when it fails."""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ExportError

DEFAULT_OPSET = 18      # the lowest opset the dynamo exporter writes natively
# ONNX protobuf files are limited to 2 GiB; models whose weights come near it keep them in a side file.
EXTERNAL_DATA_BYTES = 1_800_000_000
OUTPUT_NAME = "logits"
_NOISY_LOGGERS = ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript", "onnx_ir")


@dataclass
class ExportedGraph:
    path: Path
    exporter: str                   # "dynamo" or "torchscript"
    opset: int
    input_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    notice: str | None = None       # why the TorchScript exporter was used


def to_onnx(classifier, batch: dict[str, Any], path: Path, *, opset: int = DEFAULT_OPSET) -> ExportedGraph:
    """Export ``classifier`` (on the CPU, in fp32, in eval mode) to ``path``, traced on ``batch`` (two or more
    examples, so the batch axis is not fixed at one), with the axes the family names dynamic.

    Raises:
        zoo.errors.ExportError: both exporters failed, with the reasons.
    """
    import torch

    classifier.model.to("cpu").float().eval()
    graph = classifier.export_graph(batch)
    args = tuple(value.to("cpu") for value in graph.inputs.values())
    names = list(graph.inputs)
    external = sum(p.numel() * p.element_size() for p in classifier.model.parameters()) > EXTERNAL_DATA_BYTES
    common = {"input_names": names, "output_names": [OUTPUT_NAME], "dynamic_axes": graph.dynamic_axes}
    try:
        with quiet(), torch.no_grad():
            torch.onnx.export(graph.module, args, str(path), dynamo=True, opset_version=opset,
                              external_data=external, **common)
        return ExportedGraph(path, "dynamo", opset, names, graph.dynamic_axes)
    except Exception as exc:  # the dynamo exporter raises many types (torch._dynamo, onnxscript, ...)
        dynamo_error = _first_line(exc)
        _remove(path)
    try:
        with quiet(), torch.no_grad():
            torch.onnx.export(graph.module, args, str(path), dynamo=False, opset_version=min(opset, 20), **common)
    except Exception as exc:  # the TorchScript exporter raises many types too
        _remove(path)
        raise ExportError(f"the model could not be exported to ONNX: the dynamo exporter said: {dynamo_error}; "
                          f"the TorchScript exporter said: {_first_line(exc)}") from exc
    return ExportedGraph(path, "torchscript", min(opset, 20), names, graph.dynamic_axes,
                         notice=f"the dynamo exporter failed ({dynamo_error}); exported with the TorchScript "
                                "exporter instead")


def trace_batch(classifier, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch an export is traced on, from preprocessed ``items``: the first and another that batches with it
    (the same batch key), else the first twice. Two examples, because a batch of one fixes the batch axis at 1."""
    first = items[0]
    partner = next((item for item in items[1:] if classifier.batch_key(item) == classifier.batch_key(first)), first)
    return classifier.collate([first, partner])


@contextlib.contextmanager
def quiet(logger_names: tuple[str, ...] = _NOISY_LOGGERS):
    """The exporters and quantizers print progress and warnings of their own (on stdout, through ``warnings`` and
    through the loggers named; "" is the root logger); zoo reports what matters itself."""
    import logging

    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    """What went wrong, in one line: the innermost cause (the exporters wrap it), without terminal colours."""
    import re

    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _remove(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".data")):
        candidate.unlink(missing_ok=True)
