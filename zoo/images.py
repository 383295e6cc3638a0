"""Image decoding shared by the data checks and the families: one rule for what counts as a readable image.

A file is readable when PIL decodes every pixel of it (``Image.verify()`` alone passes truncated files), it has at
most :data:`MAX_IMAGE_PIXELS` pixels (checked from the header, before decoding), and, for images that hold floats
(mode ``"F"``, e.g. 32-bit float TIFF), every value is finite.

PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False: set, it fills the missing part of a truncated file with
grey and these checks would pass it.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from zoo.errors import InvalidInputError, one_line

if TYPE_CHECKING:
    from PIL import Image

# The most pixels an image may have: PIL's own decompression-bomb threshold (about 89.5 megapixels, 256 MiB at
# 3 bytes a pixel), so that memory stays bounded while decoding a file that claims to be huge.
MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3
# Held while PIL reads a header under a changed warnings filter, which is process-wide state: the server decodes
# images on several threads at once.
_OPENING = threading.Lock()


def open_image(path: str | Path | BinaryIO, *, name: str | None = None) -> Image.Image:
    """Open and fully decode the image at ``path`` (or in a binary file object, such as an upload's bytes, which
    ``name`` names in errors).

    Returns:
        The decoded image, in its own mode (convert it to "RGB" for a model).

    Raises:
        InvalidInputError: naming the file, when it does not decode, is truncated, has more than
            :data:`MAX_IMAGE_PIXELS` pixels, or holds NaN or infinite values.
    """
    image, reason = _decode(path)
    if image is None:
        raise InvalidInputError(f"{name or path}: {reason}")
    return image


def image_problem(path: str | Path) -> str | None:
    """None when :func:`open_image` would accept ``path``, else why not (one line, without the file name)."""
    image, reason = _decode(path)
    if image is not None:
        image.close()
    return reason


def _decode(path: str | Path | BinaryIO) -> tuple[Image.Image | None, str | None]:
    from PIL import Image

    try:
        # PIL warns (and past twice its threshold, raises) on huge images while opening; turned into errors here
        # so that a bomb is one refusal, never a warning on the console. The cap below is ours either way.
        # (catch_warnings is process-wide state, hence the lock.)
        with _OPENING, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, f"the image has more than {MAX_IMAGE_PIXELS:,} pixels, the most zoo decodes"
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) for bad files
        return None, f"not a readable image ({type(exc).__name__}: {one_line(exc)})"
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        return None, f"the image has {width}x{height} pixels, more than {MAX_IMAGE_PIXELS:,}, the most zoo decodes"
    try:
        image.load()
    except Exception as exc:  # truncated data: OSError; broken streams: SyntaxError, ValueError, zlib.error, ...
        image.close()
        return None, f"not a readable image ({type(exc).__name__}: {one_line(exc)})"
    if image.mode == "F" and not _all_finite(image):
        image.close()
        return None, "the image holds NaN or infinite values"
    return image, None


def _all_finite(image: Image.Image) -> bool:
    import numpy as np

    return bool(np.isfinite(np.asarray(image)).all())
