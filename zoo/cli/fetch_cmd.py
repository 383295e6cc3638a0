"""`zoo fetch`: download backbones ahead of time so later commands run with HF_HUB_OFFLINE=1."""

from __future__ import annotations

from typing import Annotated

import typer

from zoo.cli._common import JsonOption, RegistryOption, TaskOption, console, handle_errors, print_json, remember_token


def register(app: typer.Typer) -> None:
    @app.command("fetch")
    def fetch_command(
        names: Annotated[list[str] | None, typer.Argument(help="Registry names of backbones to download.",
                                                          show_default=False)] = None,
        task: TaskOption = None,
        top: Annotated[int, typer.Option(help="With --task: how many of the top data-free recommendations.")] = 3,
        token: Annotated[str | None, typer.Option(help="Token for private or gated repos \\[default: HF_TOKEN, else "
                                                  "the stored login]. Never printed or written.",
                                                  show_default=False, callback=remember_token)] = None,
        registry: RegistryOption = None,
        json_output: JsonOption = False,
    ) -> None:
        """Download backbones into the Hugging Face cache, for offline work: at the registry entry's revision, or
        the head of main, whose commit is recorded.

        Example: zoo fetch distilbert-base-uncased deberta-v3-small   (or: zoo fetch --task image-cls --top 3)
        """
        from huggingface_hub.utils import disable_progress_bars

        from zoo import api

        out = console()
        with handle_errors():
            if json_output:
                disable_progress_bars()
                results = api.fetch(names or [], task=task, top=top, registry_files=registry or [],
                                    token=token)
            else:
                results = api.fetch(names or [], task=task, top=top, registry_files=registry or [],
                                    token=token, progress=lambda message: out.print(message, soft_wrap=True))
        if json_output:
            print_json([r.to_dict() for r in results])
        else:
            from rich.table import Table

            ready = sum(r.status != "failed" for r in results)
            table = Table(title=f"{ready} of {len(results)} backbone{'s' if len(results) != 1 else ''} in the Hugging "
                          "Face cache", title_justify="left")
            for column in ("backbone", "status", "revision", "commit", "files", "size"):
                table.add_column(column, justify="right" if column in ("files", "size") else "left")
            for r in results:
                revision = r.revision or ("main" if r.status != "local" else "")
                table.add_row(r.backbone, r.status if r.status != "failed" else "[red]failed[/]",
                              revision, (r.commit or "")[:12], str(r.files) if r.files else "",
                              f"{r.bytes / 1e6:.1f} MB" if r.bytes else "")
            out.print(table)
            if all(r.status != "failed" for r in results):
                out.print("These backbones now load with HF_HUB_OFFLINE=1.")
        with handle_errors():
            api.raise_for_failures(results)
