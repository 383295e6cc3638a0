"""The `zoo` command line: wiring only. Each command module parses options, calls one API function, prints."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from zoo import __version__
from zoo.cli import (
    adapt_cmd,
    bench_cmd,
    distill_cmd,
    ensemble_cmd,
    explain_cmd,
    export_cmd,
    fetch_cmd,
    info_cmd,
    list_cmd,
    plugins_cmd,
    predict_cmd,
    push_cmd,
    recommend_cmd,
    runs_cmd,
    serve_cmd,
    soup_cmd,
    tune_cmd,
)
from zoo.cli._common import handle_errors, hide_flag_types

_CLICK_ERRORS = sys.modules[typer.BadParameter.__module__]   # see zoo.cli._common
_ABORT = tuple({typer.Abort, getattr(_CLICK_ERRORS, "Abort", typer.Abort)})


class _OneLineErrors(TyperGroup):
    """The root command: every error a command raises, and every usage error (an unknown option, a value of the
    wrong type), is one line on stderr and a non-zero exit, rendered here once for every command
    (:func:`zoo.cli._common.handle_errors`), instead of a framed block or a traceback."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        hide_flag_types(self)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            with handle_errors():
                result = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                      standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except _CLICK_ERRORS.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message())
            code = 0
        except _CLICK_ERRORS.ClickException as exc:
            where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "zoo"
            message = " ".join(exc.format_message().split())
            typer.echo(f"Error: {message} (see '{where} --help')", err=True)
            code = exc.exit_code
        except typer.Exit as exc:   # handle_errors' verdict on an error it rendered
            code = exc.exit_code
        except _ABORT:
            typer.echo("Aborted.", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="zoo",
    cls=_OneLineErrors,
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


for module in (list_cmd, info_cmd, plugins_cmd, recommend_cmd, fetch_cmd, adapt_cmd, tune_cmd, distill_cmd,
               predict_cmd, explain_cmd, bench_cmd, soup_cmd, ensemble_cmd, export_cmd, serve_cmd, push_cmd,
               runs_cmd):
    module.register(app)


def main() -> None:
    app()
