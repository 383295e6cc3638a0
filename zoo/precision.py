"""Numeric precision: which one `auto|bf16|fp16|fp32` means on a device, and the autocast that runs it.

One table for every forward pass zoo makes: adapt's training and evaluation (through accelerate, which
:func:`accelerate_mixed_precision` configures), the frozen passes that cache a linear probe's features or score
backbones for `zoo recommend --data`, `zoo bench`, and `zoo predict` (in the run's precision on a GPU). What was
resolved is what run records, model cards and bench results report: never "auto".

The fp16 loss scaler is accelerate's, and there is no other: every gradient zoo takes in fp16 goes through the
trainer's `Accelerator` (its ``backward`` scales the loss, ``clip_grad_norm_`` unscales, the prepared optimizer skips
a step whose gradients overflowed and ``optimizer_step_was_skipped`` says so), and the linear probe's solver works
on cached features in fp32. A second scaler would scale the same loss twice.

    requested   on a CUDA device                        on a CPU
    auto        bf16 where the GPU has it, else fp16    fp32 (CPU autocast rarely pays off)
    bf16        bf16                                    bf16
    fp16        fp16 (losses scaled when training)      refused
    fp32        fp32                                    fp32
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from zoo.errors import InvalidInputError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def resolve_precision(requested: str, device: Any) -> str:
    """The precision ``requested`` means on ``device`` (``cpu``, ``cuda``, ``cuda:N`` or a ``torch.device``):
    ``bf16``, ``fp16`` or ``fp32`` (see the module's table).

    Raises:
        zoo.errors.InvalidInputError: an unknown precision, or fp16 on a device other than a CUDA GPU.
    """
    if requested not in PRECISIONS:
        raise InvalidInputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    device_type = _device_type(device)
    if requested == "auto":
        if device_type != "cuda":
            return "fp32"
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "fp16" and device_type != "cuda":
        raise InvalidInputError("--precision fp16 needs a CUDA device; use bf16 or fp32 on a CPU")
    return requested


def autocast(precision: str, device: Any) -> Callable[[], AbstractContextManager]:
    """A factory of the context a forward pass in ``precision`` (resolved) runs under on ``device``: torch's
    autocast for bf16 and fp16, nothing for fp32. A factory, since a context is entered once per batch."""
    if precision == "fp32":
        return nullcontext
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    device_type = _device_type(device)
    return lambda: torch.autocast(device_type, dtype=dtype)


def accelerate_mixed_precision(precision: str) -> str:
    """accelerate's ``mixed_precision`` for ``precision`` (resolved): ``no``, ``bf16`` or ``fp16``; with fp16,
    accelerate's GradScaler, the one zoo trains with (see the module docstring), scales the loss and skips steps
    whose gradients overflow."""
    return {"fp32": "no"}.get(precision, precision)


def _device_type(device: Any) -> str:
    return getattr(device, "type", None) or str(device).partition(":")[0]
