"""The `zoo` command line: wiring only. Each command module parses options, calls one API function, prints."""

from __future__ import annotations

import typer

from zoo import __version__
from zoo.cli import (
    adapt_cmd,
    bench_cmd,
    fetch_cmd,
    info_cmd,
    list_cmd,
    plugins_cmd,
    predict_cmd,
    push_cmd,
    recommend_cmd,
    runs_cmd,
)

app = typer.Typer(
    name="zoo",
    help="Recommend, adapt, benchmark and publish pretrained backbones for image, text and audio "
         "classification.\n\nExample: zoo recommend --task text-cls --device cpu --max-latency-ms 20",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zoo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """zoo: a plugin-based model-zoo hub."""


for module in (list_cmd, info_cmd, plugins_cmd, recommend_cmd, fetch_cmd, adapt_cmd, predict_cmd, bench_cmd, push_cmd,
               runs_cmd):
    module.register(app)


def main() -> None:
    app()
