"""`zoo bench`: speed, memory and accuracy of models on this machine, one or side by side."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated

import typer

from zoo.cli import _format as fmt
from zoo.cli._common import JsonOption, RegistryOption, TaskOption, console, print_json, progress_console
from zoo.errors import InvalidInputError


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidInputError(f"--batch-sizes: cannot read {text!r}; give integers like 1,8,32") from None
    if not sizes:
        raise InvalidInputError("--batch-sizes: give at least one batch size")
    return sizes


def _rows(result) -> list[tuple[str, str]]:
    rows = [("weights", result.weights), ("device", result.fingerprint.get("device_name") or
                                          f"{result.fingerprint['cpu']} ({result.fingerprint['threads']} threads)"),
            ("runtime", result.runtime), ("precision", result.precision),
            ("input", ", ".join(f"{k} {v}" for k, v in result.input["shapes"].items())),
            ("parameters", f"{result.params_m:.2f} M"),
            ("GFLOPs / example", "n/a" if result.gflops is None else f"{result.gflops:.3f}"),
            ("latency p50 (batch 1)", fmt.milliseconds(result.latency_ms["p50"]) +
             _range(result, "latency_p50_ms", "{:.2f}")),
            ("latency p95 (batch 1)", fmt.milliseconds(result.latency_ms["p95"]) +
             _range(result, "latency_p95_ms", "{:.2f}"))]
    rows += [(f"throughput (batch {t['batch_size']})",
              f"{t['samples_per_s']:.1f} /s" + _range(result, f"throughput_b{t['batch_size']}", "{:.1f}"))
             for t in result.throughput]
    rows.append((f"peak memory ({result.peak_memory_kind})", f"{result.peak_memory_mb:.0f} MB"))
    if result.size_mb is not None:
        rows.append(("size on disk", f"{result.size_mb:.1f} MB"))
    if result.mfu is not None:
        rows.append(("model FLOPs utilisation", f"{100 * result.mfu:.1f}%"))
    if result.accuracy:
        from zoo import api

        task = api.get_task(result.task)   # multi-label results report the multi-label main metric
        names = task.headline_metrics(task.main_metric(multi_label=True) in result.accuracy)
        rows += [(f"{name} ({result.accuracy['examples']} examples)", fmt.metric(result.accuracy[name]))
                 for name in names]
    return rows


def _range(result, figure: str, number: str) -> str:
    """The lowest and highest of a figure over the rounds, after the figure: " (2.81-3.02)"; nothing with one
    round."""
    spread = result.spread.get(figure)
    if not spread or len(spread["rounds"]) < 2:
        return ""
    return f" ({number.format(spread['low'])}–{number.format(spread['high'])})"


def _headers(results) -> list[str]:
    """Each column's header: the backbone, and where several columns share one (two runs of one backbone), the
    target as given too (the run directory), or its position when even that is the same."""
    backbones = [r.backbone for r in results]
    headers = [f"{r.backbone}\n{r.target}" if backbones.count(r.backbone) > 1 and r.target != r.backbone
               else r.backbone for r in results]
    return [f"{header}\n#{index}" if headers.count(header) > 1 else header
            for index, header in enumerate(headers, start=1)]


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_command(
        targets: Annotated[list[str], typer.Argument(help="Run directories, export folders (zoo export), registry "
                                                     "names, saved-model folders, or Hub ids / local-dir: paths with "
                                                     "--family.")],
        compare: Annotated[bool, typer.Option("--compare", help="Show several targets side by side (implied "
                                              "by more than one target).")] = False,
        device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
        precision: Annotated[str, typer.Option(help="fp32, bf16, fp16 (CUDA only) or auto (bf16 or fp16 on a GPU, "
                                                           "fp32 on a CPU).")] = "fp32",
        batch_sizes: Annotated[str, typer.Option(help="Batch sizes to measure throughput at.")] = "1,8,32",
        image_size: Annotated[int | None, typer.Option(help="Images: square input size \\[default: the model's].",
                                                       show_default=False)] = None,
        seq_len: Annotated[int, typer.Option(help="Text: tokens per example.")] = 128,
        seconds: Annotated[float, typer.Option(help="Audio: seconds per example.")] = 1.0,
        warmup: Annotated[int, typer.Option(help="Untimed calls before timing.")] = 10,
        iters: Annotated[int, typer.Option(help="Timed calls at batch 1 (at least; a quarter at larger "
                                           "batches), shared out over the rounds.")] = 50,
        rounds: Annotated[int, typer.Option(help="Rounds to share the timed calls over, each timing every batch "
                                            "size in turn; the table shows each figure's lowest and highest over "
                                            "them.")] = 5,
        data: Annotated[str | None, typer.Option(help="Labelled data to measure accuracy, macro-F1 and the "
                                                 "confusion matrix on (run directories).", show_default=False)] = None,
        weights: Annotated[str, typer.Option(help="Registry backbones: pretrained, or random (no "
                                             "download; same speed).")] = "pretrained",
        task: TaskOption = None,
        family: Annotated[str | None, typer.Option(help="Family of a Hub id or local-dir: path that is not in "
                                                   "the registry.", show_default=False)] = None,
        no_store: Annotated[bool, typer.Option("--no-store", help="Do not record results in the history.")] = False,
        json_output: JsonOption = False,
        registry: RegistryOption = None,
    ) -> None:
        """Measure latency (p50/p95), throughput, peak memory, FLOPs and, with --data, accuracy.

        Each speed figure shows its lowest and highest over --rounds; a busy machine or rounds that disagree are
        named in a warning on stderr.

        Example: zoo bench runs/tickets-distilbert-base-uncased --data tickets_test.csv
        \n\nExample: zoo bench runs/tickets runs/tickets/onnx runs/tickets/onnx-int8 --compare --data test.csv
        \n\nExample: zoo bench --compare resnet50.a1_in1k convnext_tiny.in12k_ft_in1k --weights random
        """
        from zoo import api

        sizes = _batch_sizes(batch_sizes)
        progress = progress_console()
        results = []
        for index, target in enumerate(targets, start=1):
            with progress.status(f"measuring {target} ({index}/{len(targets)})") if progress else nullcontext():
                results.append(api.bench(target, device=device, precision=precision, batch_sizes=sizes,
                                         image_size=image_size, seq_len=seq_len, seconds=seconds, warmup=warmup,
                                         iters=iters, rounds=rounds, data=data, weights=weights, task=task,
                                         family=family,
                                         registry_files=registry or (), store=not no_store))
        for result in results:   # on stderr, so that --json output stays clean
            for warning in result.warnings:
                typer.echo(f"warning: {result.target}: {warning}", err=True)
        if json_output:
            print_json([r.to_dict() for r in results] if len(results) > 1 or compare else results[0].to_dict())
            return
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="zoo bench", title_justify="left")
        table.add_column("")
        for header in _headers(results):
            table.add_column(escape(header), justify="right", overflow="fold")
        per_target = [dict(_rows(r)) for r in results]
        labels = list(dict.fromkeys(label for rows in per_target for label in rows))
        for label in labels:
            table.add_row(label, *[rows.get(label, "") for rows in per_target])
        out = console()
        out.print(table)
        runtimes = " and ".join(dict.fromkeys(
            f"onnxruntime {r.fingerprint.get('onnxruntime', '')}".strip()
            if r.runtime == "onnxruntime" else f"torch {r.fingerprint['torch']}" for r in results))
        spread = f"; (lowest–highest) over {rounds} rounds" if rounds > 1 else ""
        out.print(f"[dim]{runtimes}; forward pass only, after {warmup} warm-up call{'s' if warmup != 1 else ''}, "
                  f"inference mode{spread}.[/dim]")
