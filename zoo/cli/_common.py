"""What every command shares: option aliases, output (rich for people, JSON for scripts) and error rendering."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from zoo.errors import ZooError

DEBUG_ENV = "ZOO_DEBUG"

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
RegistryOption = Annotated[
    list[Path] | None,
    typer.Option("--registry", "-r", help="Extra registry TOML file (repeatable); also read from ZOO_REGISTRY.",
                 show_default=False),
]
TaskOption = Annotated[
    str | None, typer.Option("--task", "-t", help="Task type: image-cls, text-cls or audio-cls.",
                                show_default=False),
]


def console():
    from rich.console import Console

    return Console()


def print_json(data: Any) -> None:
    """Strict JSON on stdout, unstyled, so scripts can parse it (no NaN: see :mod:`zoo.jsonio`)."""
    from zoo.jsonio import dumps

    sys.stdout.write(dumps(data, indent=2) + "\n")


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn a zoo error into one line on stderr and a non-zero exit; ``ZOO_DEBUG=1`` shows the traceback."""
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except ZooError as exc:
        if debug:
            raise
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:  # an unexpected failure still gets one line, not a traceback
        if debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        typer.echo(f"Error: unexpected {type(exc).__name__}: {message} (set {DEBUG_ENV}=1 for the traceback)",
                   err=True)
        raise typer.Exit(1) from None
