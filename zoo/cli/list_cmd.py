"""`zoo list`: the backbones the hub knows."""

from __future__ import annotations

from typing import Annotated

import typer

from zoo.cli._common import JsonOption, RegistryOption, TaskOption, console, handle_errors, print_json


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_command(
        pattern: Annotated[str | None, typer.Argument(help="Shell wildcard over names, e.g. 'convnext*'.",
                                                         show_default=False)] = None,
        task: TaskOption = None,
        family: Annotated[str | None, typer.Option("--family", "-f", help="Only this family (e.g. timm).",
                                                      show_default=False)] = None,
        json_output: JsonOption = False,
        registry: RegistryOption = None,
    ) -> None:
        """List registry backbones, optionally filtered by task, family or name pattern.

        Example: zoo list --task audio-cls
        """
        from zoo import api

        with handle_errors():
            specs = api.list_backbones(task=task, family=family, pattern=pattern, registry_files=registry or ())
        if json_output:
            print_json([spec.to_dict() for spec in specs])
            return
        from rich.table import Table

        table = Table(title=f"{len(specs)} backbones", title_justify="left")
        for column, justify in (("name", "left"), ("family", "left"), ("tasks", "left"), ("params (M)", "right"),
                                ("GFLOPs", "right"), ("input", "left"), ("licence", "left"),
                                ("reference", "left")):
            table.add_column(column, justify=justify)
        for spec in specs:
            metrics = [m for t in spec.tasks for m in api.PRIOR_METRICS.get(t, ())]
            ref = next((r for m in metrics for r in spec.reference if r.metric == m), None)
            table.add_row(spec.name, spec.family, ",".join(spec.tasks), f"{spec.params_m:.1f}",
                          f"{spec.gflops:.2f}", " ".join(f"{k}={v}" for k, v in spec.input.items()),
                          spec.license, f"{ref.metric} {ref.value:g}" if ref else "")
        console().print(table)
