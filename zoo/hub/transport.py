"""What the network raises under huggingface_hub, shared by push and fetch to tell a broken connection apart."""

from __future__ import annotations


def transport_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a broken connection raises through the HTTP client huggingface_hub uses (which one it is
    depends on its version), plus OSError."""
    import importlib

    errors: list[type[BaseException]] = [OSError]
    for module_name in ("httpx2", "httpx", "requests"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        base = getattr(module, "HTTPError", None) if module_name != "requests" else module.RequestException
        if isinstance(base, type):
            errors.append(base)
    return tuple(errors)
