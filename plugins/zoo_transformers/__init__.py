"""zoo plugin: text and audio classification backbones through Hugging Face transformers.

Written exactly as a third-party plugin would be: it registers through the ``zoo`` entry-point group and uses only
zoo's public plugin API (``zoo.plugins.hookimpl``, ``zoo.family``, ``zoo.errors``).
"""

from __future__ import annotations

from zoo.plugins import hookimpl
from zoo_transformers.family import TransformersFamily

__version__ = "0.1.0"


@hookimpl
def zoo_families():
    return [TransformersFamily]
