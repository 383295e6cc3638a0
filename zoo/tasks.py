"""The task types zoo knows and what differs between them: the input an example is, the metrics a run reports
(and which one it is judged by), how a raw input is read for prediction, and the Hugging Face pipeline tag.

Adding a task type is a new :class:`Task` here and the families that serve it; the rest of zoo reads these rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError, UnknownTaskError

# What a classification run reports, main metric first, then macro-F1: the two a card or a table shows first.
SINGLE_LABEL_METRICS = ("accuracy", "macro_f1")
MULTI_LABEL_METRICS = ("micro_f1", "macro_f1", "subset_accuracy")


@dataclass(frozen=True)
class Task:
    name: str             # the id used everywhere: in the registry, the CLI and run records
    title: str            # how people say it
    input_kind: str       # what one example is: "image", "text" or "audio"
    pipeline_tag: str     # the Hugging Face pipeline tag of an adapted model
    input_fields: tuple[str, ...]  # registry `input` keys every entry of this task must have
    # the `input` a backbone named on the command line (not in the registry) is given
    default_input: Mapping[str, float] = field(default_factory=dict, compare=False, hash=False)
    metrics: tuple[str, ...] = SINGLE_LABEL_METRICS              # reported with one label per example
    multi_label_metrics: tuple[str, ...] = MULTI_LABEL_METRICS   # reported when an example may have several

    def reported_metrics(self, multi_label: bool) -> tuple[str, ...]:
        """The metrics a run reports, the main one first; `--metric` may select on any of them."""
        return self.multi_label_metrics if multi_label else self.metrics

    def headline_metrics(self, multi_label: bool) -> tuple[str, ...]:
        """The main metric and macro-F1: what a model card, a summary or a bench table shows."""
        return self.reported_metrics(multi_label)[:2]

    def main_metric(self, multi_label: bool) -> str:
        """The metric a run selects on and is judged by, unless `--metric` says otherwise."""
        return self.reported_metrics(multi_label)[0]

    def read_input(self, value: Any, *, sample_rate: int | None = None, max_seconds: float = 10.0) -> Any:
        """One input to classify as a family's ``preprocess`` takes it: an audio file is read (mono, resampled to
        ``sample_rate``, cut to ``max_seconds``); an image path must name a file; a text, an array or an image
        object passes as it is.

        Raises:
            zoo.errors.InvalidInputError: naming the input that cannot be read.
        """
        if not isinstance(value, (str, Path)):
            return value
        if self.input_kind == "audio":
            from zoo.audio import read_audio

            return read_audio(value, sample_rate=sample_rate, max_seconds=max_seconds)
        if self.input_kind == "image" and not Path(value).is_file():
            raise InvalidInputError(f"{value}: no such image file")
        return value


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("image-cls", "image classification", "image", "image-classification", ("image_size",),
             default_input={"image_size": 224}),
        Task("text-cls", "text classification", "text", "text-classification", ("max_tokens", "seq_len"),
             default_input={"max_tokens": 512, "seq_len": 128}),
        Task("audio-cls", "speech and audio classification", "audio", "audio-classification",
             ("sample_rate", "seconds"), default_input={"sample_rate": 16000, "seconds": 1.0}),
    )
}


def get_task(name: str) -> Task:
    """Return the task called ``name``.

    Raises:
        UnknownTaskError: if no task has that name; the message suggests the closest one.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(name, list(TASKS)) from None


def reported_metrics(task: str | None, *, multi_label: bool) -> tuple[str, ...]:
    """:meth:`Task.reported_metrics` of the task called ``task``; a record of a task this zoo does not know (or of
    none) reads with the classification defaults."""
    known = TASKS.get(task or "")
    if known is not None:
        return known.reported_metrics(multi_label)
    return MULTI_LABEL_METRICS if multi_label else SINGLE_LABEL_METRICS


# Words that make a metric better when lower: losses, errors (word and character error rates too), calibration
# errors, perplexities and times.
_LOWER_IS_BETTER = {"loss", "error", "err", "ece", "brier", "perplexity", "ppl", "wer", "cer", "latency",
                    "seconds", "sec", "s", "ms", "time"}


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` is better: any metric zoo reports or compares (``val_loss``, ``ece``,
    ``latency_ms``) and any published benchmark a registry entry cites (``librispeech-test-clean/wer``). Rates per
    unit (``samples_per_second``) and everything else are better when higher."""
    tokens = set(re.split(r"[\W_]+", metric.lower()))
    return bool(tokens & _LOWER_IS_BETTER) and "per" not in tokens
