"""`zoo plugins`: every discovered plugin, what it provides, and why any failed."""

from __future__ import annotations

import typer

from zoo.cli._common import JsonOption, RegistryOption, console, print_json


def register(app: typer.Typer) -> None:
    @app.command("plugins")
    def plugins_command(json_output: JsonOption = False, registry: RegistryOption = None) -> None:
        """List plugins (entry-point group 'zoo') with version, families, backbones and errors.

        Example: zoo plugins --json
        """
        from zoo import api

        infos = api.plugin_report(registry_files=registry or ())
        if json_output:
            print_json([info.to_dict() for info in infos])
            return
        from rich.table import Table

        table = Table(title=f"{len(infos)} plugins", title_justify="left")
        for column in ("plugin", "package", "version", "status", "families", "backbones", "errors"):
            table.add_column(column, overflow="fold")
        for info in infos:
            status = {"ok": "[green]ok[/green]", "failed": "[red]failed[/red]"}.get(info.status, info.status)
            if info.status == "ok" and info.errors:
                status = "[yellow]ok, with errors[/yellow]"
            table.add_row(info.name, info.distribution or info.module, info.version, status,
                          ", ".join(info.families), str(len(info.backbones)), "\n".join(info.errors))
        console().print(table)
