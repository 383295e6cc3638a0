"""`zoo ensemble`: finished runs of one task combined into one model, weighted on validation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo.cli import _format as fmt
from zoo.cli._common import JsonOption, console, print_json, progress_console


def register(app: typer.Typer) -> None:
    @app.command("ensemble")
    def ensemble_command(
        runs: Annotated[list[Path], typer.Argument(help="Two or more finished runs of the same task and labels "
                                                   "(backbones and families may differ).", show_default=False)],
        method: Annotated[str, typer.Option(help="caruana (greedy selection with replacement on validation, the "
                                            "best prefix kept) or mean (equal weights).")] = "caruana",
        size: Annotated[int, typer.Option(help="Caruana's selection steps (at most 100): a weight's grain is "
                                          "1/size.")] = 25,
        val: Annotated[str | None, typer.Option(help="Labelled data to choose on, every member scored once on it "
                                                "\\[default: the validation outputs the runs stored, which must "
                                                "score the same examples].", show_default=False)] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="The ensemble's run folder \\[default: "
                                                    "runs/<data>-ensemble].", show_default=False)] = None,
        device: Annotated[str, typer.Option(help="Where members are scored (--val, the test split): auto, cpu or "
                                            "cuda.")] = "auto",
        no_store: Annotated[bool, typer.Option("--no-store",
                                               help="Do not record the ensemble in the history.")] = False,
        json_output: JsonOption = False,
    ) -> None:
        """Combine runs into an ensemble: a run of its own (members, weights, card) that predict, bench, serve and
        push accept. Caruana's selection never scores below the best member on validation.

        Example: zoo ensemble runs/tickets-distilbert runs/tickets-minilm --size 25
        """
        from zoo import api

        progress = progress_console()
        options = dict(method=method, size=size, val=val, output=output, device=device, store=not no_store)
        if progress is None:
            record = api.ensemble(runs, **options)
        else:
            with progress.status("combining runs") as status:
                record = api.ensemble(runs, **options, progress=status.update)
        section = record["ensemble"]
        for warning in section["warnings"]:   # on stderr, so that --json output stays clean
            typer.echo(f"warning: {warning}", err=True)
        if json_output:
            print_json(record)
            return
        _summary(record)


def _summary(record) -> None:
    from rich.table import Table

    section = record["ensemble"]
    metric = section["metric"]
    table = Table(title=f"{record['backbone']['name']} → {record['run_dir']}", title_justify="left")
    for name, justify in (("run", "left"), ("backbone", "left"), ("family", "left"),
                          (f"validation {metric}", "right"), ("weight", "right")):
        table.add_column(name, justify=justify)
    for member in section["members"]:
        table.add_row(member["name"], member["backbone"], member["family"],
                      fmt.metric(member["validation"][metric]),
                      fmt.metric(round(member["weight"], 4)) if member["weight"] else "0 (not chosen)")
    out = console()
    out.print(table)
    best = section["best_member"]
    out.print(f"ensemble validation {metric} {fmt.metric(section['score'])} on {section['validation']['examples']} "
              f"examples; best member {best['run']} {fmt.metric(best['score'])} ({section['gain']:+.4f})",
              soft_wrap=True)
    test = (record.get("metrics") or {}).get("test")
    if test:
        tests = [m["test"][metric] for m in section["members"] if m.get("test")]
        out.print(f"test {metric} {fmt.metric(test[metric])}"
                  + (f"; best member's {fmt.metric(max(tests))}" if tests else ""))
    elif section.get("test"):
        out.print(f"test: not scored ({section['test']})")
    out.print(f"{record['strategy_reason']}; {fmt.duration(record['wall_s'])}. Use it: zoo predict "
              f"{record['run_dir']} INPUT; measure it: zoo bench {record['run_dir']}", soft_wrap=True)
