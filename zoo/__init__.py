"""zoo: a plugin-based model-zoo hub.

Recommend pretrained backbones for image, text and audio classification, adapt them on your data,
benchmark them on your hardware and publish them to the Hugging Face Hub. The public Python API lives in
:mod:`zoo.api`; this module stays import-light so that ``zoo --help`` is fast.
"""

__version__ = "0.1.0"
