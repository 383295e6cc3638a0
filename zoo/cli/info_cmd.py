"""`zoo info NAME`: everything the registry knows about one backbone."""

from __future__ import annotations

from typing import Annotated

import typer

from zoo.cli._common import JsonOption, RegistryOption, console, print_json


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info_command(
        name: Annotated[str, typer.Argument(help="Backbone name (or its Hub repo id).")],
        json_output: JsonOption = False,
        registry: RegistryOption = None,
    ) -> None:
        """Show one backbone: source, cost, licence, pretraining data and reference numbers with sources.

        Example: zoo info convnext_tiny.in12k_ft_in1k
        """
        from zoo import api

        info = api.backbone_info(name, registry_files=registry or ())
        if json_output:
            print_json(info.to_dict())
            return
        from rich.table import Table

        spec = info.spec
        table = Table(show_header=False, title=spec.name, title_justify="left", box=None, padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        family = spec.family + ("" if info.family_available else "  [red](no loaded plugin provides it)[/red]")
        source = spec.source + (f"@{spec.revision}" if spec.revision else "")
        for key, value in (
            ("family", family), ("source", source), ("tasks", ", ".join(spec.tasks)),
            ("parameters", f"{spec.params_m:.2f} M"), ("forward FLOPs", f"{spec.gflops:.2f} G at default input"),
            ("input", ", ".join(f"{k}={v}" for k, v in spec.input.items())),
            ("licence", spec.license), ("languages", ", ".join(spec.languages) or "language-independent"),
            ("pretrained on", spec.pretrain), ("notes", spec.notes), ("defined in", spec.origin),
        ):
            if value:
                table.add_row(key, str(value))
        out = console()
        out.print(table)
        if spec.reference:
            refs = Table(title="reference numbers", title_justify="left")
            for column in ("metric", "value", "source", "where"):
                refs.add_column(column, overflow="fold")
            for ref in spec.reference:
                refs.add_row(ref.metric, f"{ref.value:g}", ref.source, ref.where)
            out.print(refs)
