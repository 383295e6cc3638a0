"""The card (README.md) of an export folder: what was exported, how, the parity figures, and how to run it."""

from __future__ import annotations

from typing import Any


def export_card(record: dict[str, Any], snippet: str) -> str:
    """Markdown for an export folder, from its zoo_export.json ``record`` and the family's onnxruntime ``snippet``
    (which loads from ``PATH``, the folder)."""
    precision = record["precision"]
    quantization = record.get("quantization", {})
    lines = [f"# {record['backbone']} ({record['task']}), ONNX {precision}", ""]
    run = record.get("run", {})
    made = (f"Exported by `zoo export` from the run `{run.get('name')}` ({run.get('strategy')}"
            + (f"; validation {run['metric']} {run['value']:.4f}" if isinstance(run.get("value"), float) else "")
            + f") with the {record['exporter']} exporter, opset {record['opset']}.")
    lines += [made]
    if record.get("exporter_notice"):
        lines += ["", f"Note: {record['exporter_notice']}."]
    if precision == "int8":
        lines += ["", f"Quantized to int8 by ONNX Runtime ({quantization.get('method')}"
                  + (f", {quantization['format']}" if quantization.get("format") else "")
                  + (f", calibrated on {quantization['calibration_examples']} training examples"
                     if quantization.get("calibration_examples") else "")
                  + f"): {quantization.get('reason', '')}."]
    lines += ["", "## Parity with the run's model", "",
              "| model | compared on | examples | max abs logit difference | agreement | metrics (torch -> ONNX) | "
              "gate |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, parity in record.get("parity", {}).items():
        metrics = ", ".join(f"{metric} {parity['reference'][metric]:.4f} -> {parity['exported'][metric]:.4f}"
                            for metric in parity.get("reference", {})) or "unlabelled"
        lines.append(f"| {name} | {parity['data']} | {parity['examples']} | {parity['max_abs_diff']:.2e} | "
                     f"{100 * parity['agreement']:.2f}% | {metrics} | {parity['gate']}: "
                     f"{'passed' if parity['passed'] else 'FAILED'} |")
    lines += ["", "## Inputs and outputs", ""]
    for item in record.get("inputs", []):
        lines.append(f"- input `{item['name']}`: shape {item['shape']}")
    for item in record.get("outputs", []):
        lines.append(f"- output `{item['name']}`: shape {item['shape']}"
                     + (" (sigmoid per label)" if record.get("multi_label") else " (softmax over labels)"))
    lines += ["", f"Labels, in output order: {', '.join(record['labels'])}.", "",
              "## Use it with onnxruntime (no torch, no zoo)", "",
              "`PATH` is this folder.", "", "```python", snippet, "```", "",
              f"Files: {', '.join(record.get('files', []))}. `zoo_export.json` records all of the above.", ""]
    return "\n".join(lines)
