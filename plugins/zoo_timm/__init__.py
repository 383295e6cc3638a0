"""zoo plugin: image classification backbones through timm.

Written exactly as a third-party plugin would be: it registers through the ``zoo`` entry-point group and uses only
zoo's public plugin API (``zoo.plugins.hookimpl``, ``zoo.family``, ``zoo.errors``).
"""

from __future__ import annotations

from zoo.plugins import hookimpl
from zoo_timm.family import TimmFamily

__version__ = "0.1.0"


@hookimpl
def zoo_families():
    return [TimmFamily]
