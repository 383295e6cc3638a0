"""`zoo soup`: average the weights of finished runs of one backbone into one model (a model soup)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from zoo.cli import _format as fmt
from zoo.cli._common import JsonOption, console, print_json, progress_console


def _summary(record: dict[str, Any]) -> None:
    from rich.table import Table

    soup = record["soup"]
    metric = soup["metric"]
    out = console()
    table = Table(title=f"{soup['method']} soup → {record['run_dir']}", title_justify="left")
    for column, justify in (("run", "left"), ("strategy", "left"), ("seed", "right"), (metric, "right"),
                            (f"soup {metric} when tried", "right"), ("kept", "left")):
        table.add_column(column, justify=justify)
    for entry in soup["ingredients"]:
        table.add_row(entry["name"], entry.get("strategy") or "", str(entry.get("seed", "")),
                      fmt.metric(entry["score"]), fmt.metric(entry.get("soup_score")), "yes" if entry["kept"] else "no")
    out.print(table)
    held_out = soup["held_out"]
    where = "the runs' validation split" if held_out["data"] == "validation split" else held_out["data"]
    out.print(f"soup {metric} {fmt.metric(soup['score'])} against {fmt.metric(soup['best_ingredient'])} for the best "
              f"ingredient ({soup['gain']:+.4f}), on {held_out['examples']} examples of {where}", markup=False,
              highlight=False)
    test = record["metrics"].get("test")
    if test:
        out.print(f"test {metric} {fmt.metric(test[metric])}", markup=False, highlight=False)
    out.print(f"files: {', '.join(record['files'])}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("soup")
    def soup_command(
        runs: Annotated[list[Path], typer.Argument(help="Finished run directories of one backbone (two or more).",
                                                   show_default=False)],
        method: Annotated[str, typer.Option(help="greedy (add a run only if the held-out score does not drop) or "
                                            "uniform (average them all).")] = "greedy",
        val: Annotated[str | None, typer.Option(help="Labelled data to choose the soup on (its validation split, else "
                                                "all of it) \\[default: the runs' validation split, when they "
                                                "share it].", show_default=False)] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder of the soup \\[default: "
                                                    "runs/<data>-<backbone>-soup].", show_default=False)] = None,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda: where the soup is scored.")] = "auto",
        precision: Annotated[str, typer.Option(help="auto, bf16, fp16 or fp32, for scoring.")] = "auto",
        no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the soup in the history.")] = False,
        json_output: JsonOption = False,
    ) -> None:
        """Average the weights of runs fine-tuned from the same backbone into one model as fast as each of them,
        chosen on held-out data (greedy: never below the best run there). The soup is a run directory like any
        other.

        Example: zoo soup runs/tickets-bert runs/tickets-bert-2 runs/tickets-bert-3 --val tickets_dev.csv
        """
        from zoo import api

        progress = progress_console()
        say = (lambda text: progress.print(f"[dim]{text}[/dim]", highlight=False)) if progress else None
        record = api.soup(runs, method=method, val=val, output=output, device=device, precision=precision,
                          store=not no_store, progress=say)
        if json_output:
            print_json(record)
        else:
            _summary(record)
