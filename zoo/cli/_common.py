"""What every command shares: option aliases, output (rich for people, JSON for scripts, progress on stderr) and
error rendering."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from zoo.errors import ZooError
from zoo.jsonio import dumps
from zoo.secrets import remember, scrub

DEBUG_ENV = "ZOO_DEBUG"
# Typer raises the command-line framework's exceptions (its own copy of click's, in recent releases): found through
# the class it exports, so either works.
_CLICK_ERRORS = sys.modules[typer.BadParameter.__module__]

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
WideOption = Annotated[bool, typer.Option("--wide", help="Show every column, even past the terminal's width "
                                          "(a narrow terminal hides the least important ones).")]
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


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):   # replaced or closed streams
        return False


def progress_console():
    """Where progress of long work is drawn: a console on stderr when stderr is a terminal, else None (no progress).

    Progress never goes to stdout, which holds only the result: with ``--json`` a person on a terminal still sees
    the progress while a script reads clean JSON, and a log file does not fill with redrawn bars.
    """
    if not stderr_is_terminal():
        return None
    from rich.console import Console

    return Console(stderr=True)


def print_json(data: Any) -> None:
    """Strict JSON on stdout, unstyled, so scripts can parse it (no NaN: see :mod:`zoo.jsonio`)."""
    sys.stdout.write(dumps(data, indent=2) + "\n")


def remember_token(value: str | None) -> str | None:
    """Option callback for ``--token``: from here on, every message the command shows is scrubbed of the value."""
    remember(value)
    return value


def hide_flag_types(command, *, subcommands: bool = True) -> None:
    """Show flags (``--json``, ``--help``, ``--private/--public``) in ``--help`` without a type tag: a flag takes
    no value, so Typer's ``<bool>`` beside it reads as if it wanted one. Applied by the root command to itself and
    to each command as it is loaded, with its subcommands."""
    for param in [*command.params, command.get_help_option(typer.Context(command))]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""     # what Typer's help shows in place of the type
    for sub in getattr(command, "commands", {}).values() if subcommands else ():
        hide_flag_types(sub)


def _scrub(text: str) -> str:
    return scrub(text)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn an error into one line on stderr and a non-zero exit; ``ZOO_DEBUG=1`` shows the traceback.

    The root command (:class:`zoo.cli._OneLineErrors`) runs every command inside it, so commands raise and never
    render errors themselves; usage errors of the command-line framework pass through to the root command.

    This is where errors reach a person, so every token is scrubbed here (:func:`zoo.secrets.scrub`): from the
    line, from the traceback, and from the log lines and warnings libraries print meanwhile, since an HTTP
    client's error text may quote the header that carries the token.
    """
    scrub = _scrub
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        with _scrubbed_logs_and_warnings(scrub):
            yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt, _CLICK_ERRORS.ClickException):
        raise
    except Exception as exc:
        exit_code = exc.exit_code if isinstance(exc, ZooError) else 1
        if debug:   # printed here rather than re-raised, so that the traceback is scrubbed too
            typer.echo(scrub("".join(traceback.format_exception(exc))).rstrip("\n"), err=True)
        elif isinstance(exc, ZooError):
            typer.echo(scrub(f"Error: {exc}"), err=True)
        else:  # an unexpected failure still gets one line, not a traceback
            message = str(exc).splitlines()[0] if str(exc) else ""
            typer.echo(scrub(f"Error: unexpected {type(exc).__name__}: {message} (set {DEBUG_ENV}=1 for the "
                             "traceback)"), err=True)
        raise typer.Exit(exit_code) from None


@contextmanager
def _scrubbed_logs_and_warnings(scrub: Callable[[str], str]) -> Iterator[None]:
    """Pass every log record made and warning shown meanwhile through ``scrub``, whichever logger or handler
    shows it."""
    import logging
    import threading
    import warnings

    make_record, show_warning = logging.getLogRecordFactory(), warnings.showwarning
    # Finding the tokens asks huggingface_hub, which may itself log or warn: that must not scrub again, forever.
    scrubbing = threading.local()

    def once(text: str) -> str:
        if getattr(scrubbing, "active", False):
            return text
        scrubbing.active = True
        try:
            return scrub(text)
        finally:
            scrubbing.active = False

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # malformed arguments: logging reports those itself
            return record
        record.msg, record.args = once(message), None
        if record.exc_info:   # formatted now, scrubbed, so handlers print this text instead of formatting again
            record.exc_text = once(logging.Formatter().formatException(record.exc_info))
        return record

    def scrubbed_warning(message, category, filename, lineno, file=None, line=None) -> None:
        show_warning(once(str(message)), category, filename, lineno, file, line)

    logging.setLogRecordFactory(scrubbed_record)
    warnings.showwarning = scrubbed_warning
    try:
        yield
    finally:
        logging.setLogRecordFactory(make_record)
        warnings.showwarning = show_warning
