# zoo-tinycnn/zoo_tinycnn/__init__.py
"""A third-party zoo plugin: small CNN image classifiers whose weights live in Hub repos."""

from pathlib import Path

from zoo.plugins import hookimpl
from zoo_tinycnn.family import TinyCnnFamily


@hookimpl
def zoo_families():
    return [TinyCnnFamily]


@hookimpl
def zoo_registry():
    return [Path(__file__).with_name("backbones.toml")]
