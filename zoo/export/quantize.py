"""int8 models with ONNX Runtime's own quantizers (``torch.ao.quantization`` is deprecated).

``dynamic``: weights of MatMul and Gemm in int8, activation scales computed per batch at run time; no calibration,
right for transformers. ``static``: QDQ (quantize-dequantize pairs around every quantized operator), weights per
channel, activation ranges calibrated on training examples; right for CNNs, whose convolutions dynamic
quantization leaves in float.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from zoo.errors import ExportError
from zoo.export.graph import quiet

METHODS = ("dynamic", "static")
DYNAMIC_OPS = ["MatMul", "Gemm"]


def quantize(source: Path, target: Path, method: str, *,
             calibration: Iterable[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the int8 version of the fp32 model at ``source`` to ``target`` and say how it was made.

    ``calibration`` (static only) yields batches of model inputs (numpy arrays by input name).

    Raises:
        zoo.errors.ExportError: the quantizer failed, with its reason.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    details: dict[str, Any] = {"method": method, "tool": "onnxruntime.quantization", "weight_type": "int8"}
    source, target = Path(source).resolve(), Path(target).resolve()
    # In the scratch folder: ONNX Runtime's symbolic shape inference, when it gives up, dumps the model (weights
    # and all) into the working directory before raising; there it is removed with the folder.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, contextlib.chdir(scratch), quiet(("",)):
        prepared = Path(scratch) / "prepared.onnx"
        try:
            # Shape inference and graph optimisation first, as ONNX Runtime advises before quantizing.
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
            details["pre_processed"] = True
        except Exception as exc:  # symbolic shape inference fails on some graphs; quantizing still works
            prepared = source
            details["pre_processed"] = False
            details["pre_process_note"] = f"skipped ({type(exc).__name__}: {str(exc)[:120]})"
        try:
            if method == "dynamic":
                quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=DYNAMIC_OPS, per_channel=False)
                details.update(operators=DYNAMIC_OPS, activations="dynamic, per batch")
            elif method == "static":
                reader = _reader(calibration or [])
                quantize_static(str(prepared), str(target), reader, quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
                details.update(format="QDQ", per_channel=True, activations="int8, calibrated (min-max)",
                               calibration_batches=reader.batches)
            else:
                raise ExportError(f"unknown quantization {method!r}; choose one of {', '.join(METHODS)}")
        except ExportError:
            raise
        except Exception as exc:  # onnxruntime's quantizers raise many types
            target.unlink(missing_ok=True)
            raise ExportError(f"{method} int8 quantization failed: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
    return details


def _reader(batches: Iterable[dict[str, Any]]):
    """onnxruntime's CalibrationDataReader over our batches of inputs, rewindable."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.all = list(batches)
            self.batches = len(self.all)
            self.rest: Iterator[dict[str, Any]] = iter(self.all)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.rest, None)

        def rewind(self) -> None:
            self.rest = iter(self.all)

    return Reader()
