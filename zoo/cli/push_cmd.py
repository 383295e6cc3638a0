"""`zoo push`: publish a finished run to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zoo.cli._common import JsonOption, console, handle_errors, print_json, remember_token


def register(app: typer.Typer) -> None:
    @app.command("push")
    def push_command(
        run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
        repo_id: Annotated[str, typer.Option("--repo-id", help="The model repo to create or update, as "
                                             "NAMESPACE/NAME.")],
        private: Annotated[bool | None, typer.Option("--private/--public", help="Visibility of a repo this push "
                                                     "creates \\[default: private]; an existing repo keeps its own.",
                                                     show_default=False)] = None,
        branch: Annotated[str, typer.Option(help="Branch to commit to; created from main when missing.")] = "main",
        commit_message: Annotated[str | None, typer.Option(help="Commit message \\[default: backbone, task, "
                                                           "strategy and score].", show_default=False)] = None,
        token: Annotated[str | None, typer.Option(help="Hugging Face token with write access \\[default: HF_TOKEN, "
                                                  "else the stored login]. Never printed or written.",
                                                  show_default=False, callback=remember_token)] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Publish a run: native model files, zoo_run.json, plots and a model card, checked after upload.

        Example: zoo push runs/tickets-distilbert --repo-id me/tickets-distilbert --private
        """
        from zoo import api

        out = console()
        with handle_errors():
            if json_output:
                result = api.push(run_dir, repo_id, private=private, branch=branch, commit_message=commit_message,
                                  token=token)
            else:
                with out.status(f"pushing {run_dir} to {repo_id}") as status:
                    result = api.push(run_dir, repo_id, private=private, branch=branch,
                                      commit_message=commit_message, token=token,
                                      progress=lambda message: status.update(message))
        if json_output:
            print_json(result.to_dict())
            return
        what = "created" if result.created else "updated"
        if not result.changed:
            what = "already up to date"
        visibility = "private" if result.private else "public"
        out.print(f"[bold]{result.repo_id}[/] ({visibility}) {what}: {len(result.files)} files checked at commit "
                  f"{result.commit[:12]}")
        for note in result.notes:
            out.print(f"[yellow]note:[/] {note}")
        out.print(result.url, soft_wrap=True)
