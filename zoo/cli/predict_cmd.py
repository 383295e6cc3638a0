"""`zoo predict`: classify files or texts with a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo.cli._common import JsonOption, console, print_json


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict_command(
        run_dir: Annotated[Path, typer.Argument(help="A finished run directory, or an export folder (zoo export).")],
        inputs: Annotated[list[str], typer.Argument(help="Image or audio files; for text runs, texts or .txt "
                                                    "files of one text per line.")],
        top_k: Annotated[int, typer.Option(help="How many labels to show per input.")] = 3,
        json_output: JsonOption = False,
    ) -> None:
        """Classify inputs with a finished run's model.

        Example: zoo predict runs/tickets-distilbert "my order never arrived" --top-k 2
        """
        from zoo import api

        predictions = api.predict(run_dir, inputs, top_k=top_k)
        if json_output:
            print_json([p.to_dict() for p in predictions])
            return
        from rich.table import Table

        table = Table(title=str(run_dir), title_justify="left")
        table.add_column("input", overflow="fold")
        for i in range(min(top_k, len(predictions[0].labels)) if predictions else 0):
            table.add_column(f"#{i + 1}")
        for prediction in predictions:
            table.add_row(prediction.input, *[f"{p['label']} ({p['score']:.3f})" for p in prediction.labels])
        console().print(table)
