"""`zoo predict`: classify files or texts with a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo.cli._common import JsonOption, console, print_json, progress_console


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict_command(
        run_dir: Annotated[Path, typer.Argument(help="A finished run directory, or an export folder (zoo export).")],
        inputs: Annotated[list[str], typer.Argument(help="Image or audio files; for text runs, texts or .txt "
                                                    "files of one text per line.")],
        top_k: Annotated[int, typer.Option(help="How many labels to show per input.")] = 3,
        explain: Annotated[bool, typer.Option("--explain", help="Also list the words, image regions or "
                                              "stretches of audio that pushed most towards each top label (a run, "
                                              "not an export folder; slower: one explanation per input).")] = False,
        explain_method: Annotated[str | None, typer.Option(help="With --explain: ig (integrated gradients, the "
                                                           "default), occlusion or shap.", show_default=False)]
        = None,
        json_output: JsonOption = False,
    ) -> None:
        """Classify inputs with a finished run's model.

        Example: zoo predict runs/tickets-distilbert "my order never arrived" --top-k 2 --explain
        """
        from zoo import api

        options = dict(top_k=top_k, explain=explain, explain_method=explain_method)
        progress = progress_console() if explain else None
        if progress is None:
            predictions = api.predict(run_dir, inputs, **options)
        else:
            with progress.status("classifying and explaining") as status:
                predictions = api.predict(
                    run_dir, inputs, **options,
                    progress=lambda done, total: status.update(f"explained {done} of {total}"))
        if json_output:
            print_json([p.to_dict() for p in predictions])
            return
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=str(run_dir), title_justify="left")
        table.add_column("input", overflow="fold")
        for i in range(min(top_k, len(predictions[0].labels)) if predictions else 0):
            table.add_column(f"#{i + 1}")
        if explain:
            table.add_column("because (#1)", overflow="fold")
        for prediction in predictions:
            cells = [f"{p['label']} ({p['score']:.3f})" for p in prediction.labels]
            if explain:
                # Words are the input's own: shown as they are, never read as markup.
                cells.append(escape(", ".join(f"{u['name']} ({u['attribution']:+.3g})"
                                              for u in prediction.because()) or "nothing pushed towards it"))
            table.add_row(prediction.input, *cells)
        out = console()
        out.print(table)
        for prediction in predictions:
            explanation = prediction.explanation
            for warning in explanation.warnings if explanation is not None else ():
                out.print(f"[yellow]warning:[/] {escape(prediction.input)}: {escape(warning)}", highlight=False)
        if explain and predictions:
            seconds = sum(p.explanation.seconds for p in predictions) / len(predictions)
            method = predictions[0].explanation.method
            out.print(f"[dim]because: {method} attributions to the top label, {seconds:.2f} s per input; "
                      "zoo explain draws them[/]", highlight=False)
