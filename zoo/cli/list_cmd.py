"""`zoo list`: the backbones the hub knows."""

from __future__ import annotations

from typing import Annotated

import typer

from zoo.cli._common import JsonOption, RegistryOption, TaskOption, WideOption, console, print_json
from zoo.cli._table import Column, fit_table


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_command(
        pattern: Annotated[str | None, typer.Argument(help="Part of a name (tiny), or a shell wildcard over names "
                                                      "(convnext*).", show_default=False)] = None,
        task: TaskOption = None,
        family: Annotated[str | None, typer.Option("--family", "-f", help="Only this family (e.g. timm).",
                                                      show_default=False)] = None,
        json_output: JsonOption = False,
        wide: WideOption = False,
        registry: RegistryOption = None,
    ) -> None:
        """List registry backbones, optionally filtered by task, family or name pattern.

        Example: zoo list --task audio-cls
        \n\nExample: zoo list tiny   (names containing "tiny"; or a wildcard: zoo list 'convnext*')
        """
        from zoo import api

        specs = api.list_backbones(task=task, family=family, pattern=pattern, registry_files=registry or ())
        if json_output:
            print_json([spec.to_dict() for spec in specs])
            return
        from rich.markup import escape

        # Hidden first on a narrow terminal: the input size and FLOPs (zoo info has them), then the licence, the
        # family, the reference number, the tasks; the name and size stay.
        columns = [Column("name"), Column("family", hide=4), Column("tasks", hide=6),
                   Column("params (M)", "right"), Column("GFLOPs", "right", hide=2), Column("input", hide=1),
                   Column("licence", hide=3), Column("reference", hide=5)]
        rows = []
        for spec in specs:
            metrics = [m for t in spec.tasks for m in api.PRIOR_METRICS.get(t, ())]
            # the number the prior ranks the task by, else the backbone's own first (a language's or a job's)
            ref = next((r for m in metrics for r in spec.reference if r.metric == m),
                       spec.reference[0] if spec.reference else None)
            rows.append([escape(spec.name), escape(spec.family), ",".join(spec.tasks), f"{spec.params_m:.1f}",
                         f"{spec.gflops:.2f}", escape(" ".join(f"{k}={v}" for k, v in spec.input.items())),
                         escape(spec.license), escape(f"{ref.metric} {ref.value:g}") if ref else ""])
        out = console()
        fit_table(columns, rows, width=out.width, wide=wide, title=f"{len(specs)} backbones").print(out)
