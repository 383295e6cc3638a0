"""What every command shares: option aliases, output (rich for people, JSON for scripts) and error rendering."""

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


def remember_token(value: str | None) -> str | None:
    """Option callback for ``--token``: from here on, every message the command shows is scrubbed of the value."""
    from zoo.secrets import remember

    remember(value)
    return value


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn an error into one line on stderr and a non-zero exit; ``ZOO_DEBUG=1`` shows the traceback.

    This is where errors reach a person, so every token is scrubbed here (:func:`zoo.secrets.scrub`): from the
    line, from the traceback, and from the log lines and warnings libraries print meanwhile, since an HTTP
    client's error text may quote the header that carries the token.
    """
    from zoo.secrets import scrub

    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        with _scrubbed_logs_and_warnings(scrub):
            yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
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
