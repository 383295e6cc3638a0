"""`zoo export`: a finished run as an ONNX model (fp32 or int8), its parity with the run proven on data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo.cli import _format as fmt
from zoo.cli._common import JsonOption, console, print_json, progress_console


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_command(
        run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder to write \\[default: RUN/onnx, "
                                                    "or RUN/onnx-int8 when quantized]; an earlier export there is "
                                                    "replaced.", show_default=False)] = None,
        format: Annotated[str, typer.Option("--format", help="Export format.")] = "onnx",
        opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
        quantize: Annotated[str, typer.Option(help="none (fp32); dynamic int8 (matrix multiplications, for "
                                              "transformers); static int8 (calibrated, for CNNs); or auto (chosen "
                                              "for the model, with the reason).")] = "none",
        calib: Annotated[int, typer.Option(help="Static int8: training examples to calibrate activation ranges "
                                           "on.")] = 100,
        check: Annotated[str | None, typer.Option(help="Labelled data to prove parity on \\[default: the run's "
                                                  "validation split].", show_default=False)] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Export a run to ONNX that runs with onnxruntime alone, with its parity checked: fp32 logits within 1e-4
        of the logit scale; int8 with agreement >= 99% and macro-F1 within one point (else nothing is written).

        Example: zoo export runs/tickets-distilbert --quantize dynamic
        """
        from zoo import api

        progress = progress_console()
        options = dict(output=output, format=format, opset=opset, quantize=quantize, calib=calib, check=check)
        if progress is None:
            result = api.export(run_dir, **options)
        else:
            with progress.status(f"exporting {run_dir}") as status:
                result = api.export(run_dir, **options, progress=status.update)
        if json_output:
            print_json(result.to_dict())
            return
        record = result.record
        out = console()
        quantization = record["quantization"]
        how = record["precision"] + (f" ({quantization['method']}: {quantization['reason']})"
                                     if record["precision"] == "int8" else "")
        out.print(f"[bold]{result.directory}[/]: ONNX {how}, {record['size_mb']:.1f} MB, "
                  f"{record['exporter']} exporter, opset {record['opset']}")
        if record.get("exporter_notice"):
            out.print(f"[yellow]note:[/] {record['exporter_notice']}")
        for name, parity in record["parity"].items():
            metrics = ", ".join(f"{metric} {fmt.metric(parity['reference'][metric])} -> "
                                f"{fmt.metric(parity['exported'][metric])}" for metric in parity["reference"])
            out.print(f"parity {name}: {parity['examples']} examples of {parity['data']}: max |Δlogit| "
                      f"{parity['max_abs_diff']:.1e}, agreement {100 * parity['agreement']:.1f}%"
                      + (f", {metrics}" if metrics else "") + f" [green]passed[/] ({parity['gate']})")
        out.print(f"Run it without zoo: see {result.directory / 'README.md'}; measure it: zoo bench {run_dir} "
                  f"{result.directory} --compare", soft_wrap=True)
