"""`zoo explain`: which words, image regions or seconds made a finished run's model decide."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo.cli._common import JsonOption, console, print_json, progress_console


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_command(
        run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
        inputs: Annotated[list[str], typer.Argument(help="Image or audio files; for text runs, texts or .txt "
                                                    "files of one text per line.")],
        method: Annotated[str, typer.Option(help="ig (integrated gradients), occlusion (each word, region or "
                                            "stretch of time replaced in turn), or shap (partition explainer).")]
        = "ig",
        target: Annotated[str, typer.Option(help="pred: the predicted label (every predicted label of a "
                                            "multi-label model); or a label's name.")] = "pred",
        steps: Annotated[str, typer.Option(help="Integrated gradients' steps; auto: 4, 8, 16, 32, 64 in "
                                           "turn until the completeness error is under 5%.")] = "auto",
        batch: Annotated[int, typer.Option(help="Examples per forward pass (halved if memory runs out).")] = 16,
        max_evals: Annotated[int, typer.Option(help="shap: forward passes per explanation at most.")] = 256,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder for the pictures (HTML for "
                                                    "text, PNG for images and audio) \\[default: "
                                                    "RUN/explanations].", show_default=False)] = None,
        device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
        top: Annotated[int, typer.Option(help="How many top words, regions or seconds to list.")] = 5,
        json_output: JsonOption = False,
    ) -> None:
        """Explain a finished run's predictions: what pushed the model to each label.

        Example: zoo explain runs/tickets-distilbert "my card was charged twice" --method ig
        """
        from zoo import api

        progress = progress_console()
        options = dict(method=method, target=target, steps=steps, batch_size=batch, max_evals=max_evals,
                       output=output, device=device)
        if progress is None:
            explanations = api.explain(run_dir, inputs, **options)
        else:
            with progress.status(f"explaining with {method}") as status:
                explanations = api.explain(
                    run_dir, inputs, **options,
                    progress=lambda done, total: status.update(f"explained {done} of {total}"))
        if json_output:
            print_json([e.to_dict() for e in explanations])
            return
        out = console()
        for explanation in explanations:
            out.print(_headline(explanation))
            if isinstance(explanation.view, str):   # a text: shown with its words shaded
                out.print(_shaded(explanation))
            best = explanation.top(top)
            out.print("  towards it: " + (", ".join(f"{u.name} ({u.attribution:+.3g})" for u in best) or "none"))
            for warning in explanation.warnings:
                out.print(f"  [yellow]warning:[/] {warning}", highlight=False)
            for path in explanation.files:
                out.print(f"  wrote {path}", highlight=False)


def _headline(explanation) -> str:
    from rich.markup import escape

    error = explanation.completeness_error
    facts = [explanation.method + (f", {explanation.steps} steps" if explanation.steps else "")]
    if error is not None:
        facts.append(f"completeness error {100 * error:.1f}%")
    facts.append(f"{explanation.seconds:.2f} s")
    return (f"[bold]{escape(explanation.input)}[/] -> [bold]{escape(explanation.label)}[/] "
            f"({explanation.score:.3f}) [dim]{escape('; '.join(facts))}[/]")


def _shaded(explanation):
    """The text with each word's background shaded by its attribution, in the pictures' colours."""
    from rich.text import Text

    from zoo import api

    text = Text("  ")
    largest = max((abs(u.attribution) for u in explanation.units), default=0.0)
    for piece, value in api.text_pieces(explanation.view, [(u.span, u.attribution) for u in explanation.units]):
        if value is None:
            text.append(piece)
            continue
        colour, strength = api.shade(value, largest)
        r, g, b = (round(255 + (c - 255) * strength) for c in colour)   # blended with white
        text.append(piece, style=f"black on rgb({r},{g},{b})")
    return text
