"""Hugging Face tokens: the one place a token is taken, and the scrubber that keeps tokens out of what is shown.

A token pasted with its trailing newline, sent as it is, is an illegal header value, and the HTTP client's error
quotes the whole header, token included. :func:`resolve_token` cleans a token as huggingface_hub cleans the ones it
reads (line breaks dropped, surrounding whitespace stripped) and refuses one with spaces or control characters
inside. :func:`scrub` replaces every token zoo knows of (those handed to it, ``HF_TOKEN`` /
``HUGGING_FACE_HUB_TOKEN``, the stored login) in a text; the CLI's error renderer passes every message, traceback,
log line and warning through it, because any library's error text may repeat a request's headers.

This module imports nothing from zoo but :mod:`zoo.errors`, so every layer can use it.
"""

from __future__ import annotations

import os

from zoo.errors import InvalidInputError

HIDDEN = "[token hidden]"
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")   # huggingface_hub reads them in this order
# Hiding a shorter string would blank out ordinary letters all over a message; no real token is that short.
_MIN_LENGTH = 4

# Tokens handed to zoo directly (--token, a ``token=`` argument), kept for the life of the process so that an error
# raised anywhere later is scrubbed of them. Tokens from the environment and the login file are read when needed.
_given: set[str] = set()


def remember(token: str | None) -> None:
    """Add ``token`` to the tokens :func:`scrub` hides."""
    if token and len(token.strip()) >= _MIN_LENGTH:
        _given.add(token)


def resolve_token(token: str | None = None) -> str | None:
    """The token to send: ``token`` when given, else ``HF_TOKEN``, else the stored login (as huggingface_hub
    finds them), without the line breaks and surrounding whitespace a paste leaves; None when there is none.

    Raises:
        zoo.errors.InvalidInputError: an empty ``token``, or a token with spaces or control characters inside it.
            The message names where the token came from and never shows it.
    """
    if token is not None:
        remember(token)
        source, value = "--token", _clean(token)
        if not value:
            raise InvalidInputError("--token is empty: give a Hugging Face token, or leave --token out to use "
                                    "HF_TOKEN or the stored login")
    else:
        from huggingface_hub import constants, get_token

        value = get_token()   # already cleaned by huggingface_hub, as _clean does
        if value is None:
            return None
        source = next((name for name in TOKEN_VARIABLES if (os.environ.get(name) or "").strip()),
                      f"the stored login ({constants.HF_TOKEN_PATH})")
    if not all(char.isascii() and char.isprintable() and not char.isspace() for char in value):
        raise InvalidInputError(f"{source}: the token has a space or a control character inside it, which no token "
                                "has; copy it again from your Hugging Face account's access token settings")
    return value


def known_tokens() -> set[str]:
    """Every token zoo may hold now, each as given, stripped, and as Python's repr writes it (escaped), which is how
    an HTTP client quotes a header it refuses."""
    found = set(_given)
    found.update(os.environ.get(name) for name in TOKEN_VARIABLES)
    try:
        from huggingface_hub import constants, get_token

        found.add(_read(constants.HF_TOKEN_PATH))
        found.add(get_token())
    except Exception:  # scrubbing must never fail: a broken login file still leaves the other tokens hidden
        pass
    forms: set[str] = set()
    for token in filter(None, found):
        for form in (token, token.strip(), _clean(token)):
            forms.update((form, repr(form)[1:-1]))
    return {form for form in forms if len(form.strip()) >= _MIN_LENGTH}


def scrub(text: str) -> str:
    """``text`` with every known token replaced by ``[token hidden]``."""
    for token in sorted(known_tokens(), key=len, reverse=True):   # a raw token before its stripped self
        text = text.replace(token, HIDDEN)
    return text


def _clean(token: str) -> str:
    """What huggingface_hub makes of a token it reads from HF_TOKEN or the login file: line breaks dropped (a token
    pasted across lines), surrounding whitespace stripped. --token gets the same, so every source behaves alike."""
    return token.replace("\r", "").replace("\n", "").strip()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError:
        return None
