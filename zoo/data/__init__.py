"""Labelled datasets for ``zoo adapt``: read image, text and audio data into train / val / test splits.

>>> from zoo.data import load_data
>>> data = load_data("reviews.csv", task="text-cls")
>>> data.label_names, len(data.train), data.split["val"]
"""

from zoo.data.base import DataSplits, Example
from zoo.data.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from zoo.data.readers import load_data, load_scored
from zoo.data.tables import LABEL_COLUMNS, PATH_COLUMNS, TEXT_COLUMNS

__all__ = ["AUDIO_EXTENSIONS", "IMAGE_EXTENSIONS", "LABEL_COLUMNS", "PATH_COLUMNS", "TEXT_COLUMNS", "DataSplits",
           "Example", "load_data", "load_scored"]
