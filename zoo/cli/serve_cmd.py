"""`zoo serve`: a finished run or an export folder behind an HTTP server with dynamic batching, the Open Inference
Protocol v2 and Prometheus metrics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from zoo.cli._common import print_json


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_command(
        target: Annotated[Path, typer.Argument(help="A finished run directory, or an export folder (zoo export).")],
        host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one (the line printed on start "
                                          "names it).")] = 8000,
        backend: Annotated[str, typer.Option(help="auto (onnx for an export folder, torch for a run), torch, or "
                                             "onnx (a run's ONNX export, RUN/onnx).")] = "auto",
        max_batch: Annotated[int, typer.Option(help="Most inputs in one model call.")] = 32,
        max_wait_ms: Annotated[float, typer.Option(help="How long a waiting input waits for others to batch with "
                                                   "(milliseconds).")] = 5.0,
        top_k: Annotated[int, typer.Option(help="Labels per answer (a request may ask for another number).")] = 5,
        workers: Annotated[int, typer.Option(help="Server processes; each loads its own copy of the model.")] = 1,
        max_body_mb: Annotated[float, typer.Option(help="Largest request body accepted (MB); larger ones get "
                                                   "413.")] = 32.0,
        name: Annotated[str | None, typer.Option(help="The model's name in /v2/models/NAME \\[default: the run "
                                                 "folder's name].", show_default=False)] = None,
        print_config: Annotated[str | None, typer.Option(help="Print a deployment manifest instead of serving: "
                                                         "kserve.", show_default=False)] = None,
        json_output: Annotated[bool, typer.Option("--json", help="Say where the server listens as JSON on stdout "
                                                  "(with --print-config: the manifest as JSON).")] = False,
    ) -> None:
        """Serve a model over HTTP: POST /predict, the Open Inference Protocol v2 (/v2/...), GET /metrics.
        Requests that arrive together are batched. Stops cleanly on SIGTERM or Ctrl-C.

        Example: zoo serve runs/tickets-distilbert --port 8080
        """
        from zoo import api

        options = dict(backend=backend, max_batch=max_batch, max_wait_ms=max_wait_ms, top_k=top_k, name=name)
        if print_config is not None:
            config = api.serving_config(target, kind=print_config, workers=workers, **options)
            if json_output:
                print_json(config.documents)
            else:
                sys.stdout.write(config.text)
            return

        def ready(url: str) -> None:
            typer.echo(f"zoo serve: {target} at {url} (Ctrl-C or SIGTERM to stop)", err=True)
            if json_output:
                print_json({"url": url, "target": str(target)})
                sys.stdout.flush()

        api.serve(target, host=host, port=port, workers=workers, max_body_mb=max_body_mb, **options, on_ready=ready)
