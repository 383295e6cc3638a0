"""Is the exported model the model? Torch and ONNX outputs compared on the same batches, and the gate each export
must pass: fp32 logits within 1e-4 of the logit scale; int8 judged by agreement (top-1, or the label set of a
multi-label model) and macro-F1, since int8 logits are never close to fp32 ones by an absolute tolerance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

FP32_RELATIVE_TOLERANCE = 1e-4     # max |Δlogit| / max(1, max |logit|): between optimum's 1e-5 and timm's 1.5e-3
FLOAT64_FACTOR = 10.0             # see Parity.float64
INT8_MIN_AGREEMENT = 0.99          # share of examples whose prediction is unchanged
INT8_MAX_F1_DROP = 0.01            # |Δ macro-F1|, one point


@dataclass
class Parity:
    """The figures of one comparison and whether they pass the gate."""

    data: str                      # what was compared on: the run's validation split, --check DATA, or synthetic
    examples: int
    precision: str                 # "fp32" or "int8"
    max_abs_diff: float            # max |Δlogit| over every example and label
    logit_scale: float             # max(1, max |torch logit|)
    relative_diff: float           # max_abs_diff / logit_scale
    agreement: float               # share of examples with the same prediction
    reference: dict[str, float] = field(default_factory=dict)   # torch: accuracy and macro-F1 (labelled data)
    exported: dict[str, float] = field(default_factory=dict)    # onnxruntime: the same
    gate: str = ""
    # Set when fp32 logits differ by more than the tolerance: both models against a float64 run of the torch
    # model. A head with large weights (a folded standardisation) amplifies rounding, in torch as in ONNX Runtime;
    # the export then passes when its error against the exact logits is within an order of magnitude of torch's
    # own fp32 error (FLOAT64_FACTOR): another runtime's kernels (fused attention, layer norm) round differently,
    # while a wrong operator is off by far more.
    float64: dict[str, float] | None = None
    passed: bool = True
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """The figures in one line, for messages."""
        parts = [f"max |Δlogit| {self.max_abs_diff:.2e} ({self.relative_diff:.2e} of the logit scale)",
                 f"agreement {100 * self.agreement:.2f}%"]
        for name in ("accuracy", "subset_accuracy", "macro_f1"):
            if name in self.reference:
                parts.append(f"{name} {self.reference[name]:.4f} -> {self.exported[name]:.4f}")
        return f"on {self.examples} examples of {self.data}: " + ", ".join(parts)


def judge(reference: np.ndarray, exported: np.ndarray, targets: np.ndarray | None, labels: list[str], *,
          multi_label: bool, quantized: bool, data: str, exact: np.ndarray | None = None) -> Parity:
    """Compare ``exported`` logits with ``reference`` (torch) logits of the same examples, with metrics on
    ``targets`` when the data is labelled, and apply the gate for ``quantized`` (int8) or fp32 models.

    ``exact``: the torch model's logits in float64, for an fp32 export whose logits differ by more than the
    tolerance (see :attr:`Parity.float64`)."""
    from zoo.engine.metrics import compute_metrics

    reference, exported = reference.astype(np.float64), exported.astype(np.float64)
    diff = float(np.abs(reference - exported).max()) if reference.size else 0.0
    scale = max(1.0, float(np.abs(reference).max()) if reference.size else 1.0)
    if multi_label:
        same = ((reference >= 0) == (exported >= 0)).all(axis=1)   # sigmoid >= 0.5, label by label
    else:
        same = reference.argmax(axis=1) == exported.argmax(axis=1)
    agreement = float(same.mean()) if len(same) else 1.0
    names = ("subset_accuracy", "micro_f1", "macro_f1") if multi_label else ("accuracy", "macro_f1")
    scores: dict[str, dict[str, float]] = {"reference": {}, "exported": {}}
    if targets is not None and len(targets):
        for side, logits in (("reference", reference), ("exported", exported)):
            metrics = compute_metrics(targets, logits, labels, multi_label=multi_label)
            scores[side] = {name: round(float(metrics[name]), 6) for name in names}
    parity = Parity(data=data, examples=len(reference), precision="int8" if quantized else "fp32",
                    max_abs_diff=diff, logit_scale=scale, relative_diff=diff / scale, agreement=agreement,
                    reference=scores["reference"], exported=scores["exported"])
    if quantized:
        parity.gate = (f"agreement >= {100 * INT8_MIN_AGREEMENT:.0f}% and |Δ macro-F1| <= "
                       f"{100 * INT8_MAX_F1_DROP:.0f} point")
        if agreement < INT8_MIN_AGREEMENT:
            parity.failures.append(f"agreement {100 * agreement:.2f}% is below {100 * INT8_MIN_AGREEMENT:.0f}%")
        if scores["reference"]:
            drop = abs(scores["reference"]["macro_f1"] - scores["exported"]["macro_f1"])
            if drop > INT8_MAX_F1_DROP:
                parity.failures.append(f"macro-F1 moved by {100 * drop:.2f} points (at most "
                                       f"{100 * INT8_MAX_F1_DROP:.0f} allowed)")
        else:
            parity.gate += " (unlabelled data: agreement only)"
    else:
        parity.gate = f"max |Δlogit| <= {FP32_RELATIVE_TOLERANCE:g} of the logit scale"
        if not np.isfinite(exported).all():
            parity.failures.append("the exported model gives NaN or infinite logits")
        elif parity.relative_diff > FP32_RELATIVE_TOLERANCE:
            if exact is None:
                parity.failures.append(f"max |Δlogit| is {parity.relative_diff:.2e} of the logit scale, above "
                                       f"{FP32_RELATIVE_TOLERANCE:g}")
            else:
                exact = exact.astype(np.float64)
                torch_error = float(np.abs(reference - exact).max())
                onnx_error = float(np.abs(exported - exact).max())
                parity.float64 = {"torch_fp32_error": torch_error, "onnx_error": onnx_error}
                parity.gate += (f" (or, against float64 logits, within {FLOAT64_FACTOR:g}x torch's own fp32 "
                                "error)")
                if onnx_error > max(FLOAT64_FACTOR * torch_error, FP32_RELATIVE_TOLERANCE * scale):
                    parity.failures.append(
                        f"max |Δlogit| is {parity.relative_diff:.2e} of the logit scale, above "
                        f"{FP32_RELATIVE_TOLERANCE:g}, and against float64 logits the ONNX model is off by "
                        f"{onnx_error:.2e} where torch's fp32 is off by {torch_error:.2e}")
    parity.passed = not parity.failures
    return parity
