"""The task types zoo knows and what differs between them: the input an example is, the metrics a run reports
(and which one it is judged by), how a raw input is read for training and prediction, how inputs are batched and
timed, the benchmarks that speak to a backbone's quality, the words that name the task in a scenario, and the
Hugging Face pipeline tag.

Adding a task type is a new :class:`Task` here and the families that serve it; the rest of zoo reads these rules.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError, UnknownTaskError
from zoo.images import open_image

# What a classification run reports, main metric first, then macro-F1: the two a card or a table shows first.
SINGLE_LABEL_METRICS = ("accuracy", "macro_f1")
MULTI_LABEL_METRICS = ("micro_f1", "macro_f1", "subset_accuracy")


# How much a benchmark of the job a scenario names counts in zoo recommend's prior, against the task's own
# benchmarks (at most 1 each): speaker-ID accuracy, not keyword spotting, should order encoders for speaker ID.
FOCUS_WEIGHT = 3.0


@dataclass(frozen=True)
class Focus:
    """A narrower job within a task that a scenario may name (keyword spotting within audio classification), with
    the published benchmarks that speak to it. When a scenario names it, zoo recommend's prior weights those
    benchmarks up (:data:`FOCUS_WEIGHT`) and prefers the backbones that report one of them."""

    name: str                   # how people say it; shown in the scenario parse and in the reasons
    words: str                  # a regular expression of the words that name it in a free-text scenario
    metrics: tuple[str, ...]    # registry reference metrics that speak to it, the most telling first


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
    # published benchmarks that speak to transfer quality (zoo recommend's prior), with how much each one counts
    prior_metrics: Mapping[str, float] = field(default_factory=dict, compare=False, hash=False)
    scenario_words: str = ""      # a regular expression of the words that name the task in a free-text scenario
    focuses: tuple[Focus, ...] = ()   # narrower jobs a scenario may name; the first one named in this order wins
    # benchmarks in one language that count in the prior only when that language is asked for (ISO 639-1 code)
    language_metrics: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)
    snippet_input: str = ""       # what the model card's usage snippet classifies: a person puts their own there
    # inputs
    token_limited: bool = False   # cut at `Classifier.max_length` tokens, which `zoo bench --seq-len` sets
    length_grouped: bool = False  # training batches group examples of similar length, so padding stays short
    channels_last: bool = False   # `Classifier.channels_last`'s default: convolutions over images, faster in NHWC
    waveform: bool = False        # a 1-D waveform: read by `read_example`, augmented by the engine (gain, shift)
    txt_lines: bool = False       # `zoo predict`: an input naming an existing .txt file stands for its lines
    bench_length: str | None = None   # the `zoo bench` option that sets an input's length, kept with the result

    def reported_metrics(self, multi_label: bool) -> tuple[str, ...]:
        """The metrics a run reports, the main one first; `--metric` may select on any of them."""
        return self.multi_label_metrics if multi_label else self.metrics

    def headline_metrics(self, multi_label: bool) -> tuple[str, ...]:
        """The main metric and macro-F1: what a model card, a summary or a bench table shows."""
        return self.reported_metrics(multi_label)[:2]

    def main_metric(self, multi_label: bool) -> str:
        """The metric a run selects on and is judged by, unless `--metric` says otherwise."""
        return self.reported_metrics(multi_label)[0]

    def focus(self, name: str | None) -> Focus | None:
        """The focus called ``name`` (as :meth:`zoo.recommend.parse_scenario` records it), or None."""
        return next((focus for focus in self.focuses if focus.name == name), None)

    def prior_weights(self, *, focus: Focus | None = None, language: str | None = None) -> dict[str, float]:
        """The benchmarks zoo recommend's data-free prior reads, with how much each counts: the ``focus``'s first at
        :data:`FOCUS_WEIGHT`, then :attr:`prior_metrics`, then the benchmarks in the requested ``language``."""
        weights = {metric: FOCUS_WEIGHT for metric in (focus.metrics if focus else ())}
        for metric, weight in self.prior_metrics.items():
            weights.setdefault(metric, weight)
        for metric in self.language_metrics.get(language or "", ()):
            weights.setdefault(metric, 1.0)
        return weights

    def read_input(self, value: Any, *, sample_rate: int | None = None, max_seconds: float = 10.0) -> Any:
        """One input to classify as a family's ``preprocess`` takes it: an audio file is read (mono, resampled to
        ``sample_rate``, cut to ``max_seconds``); an image path must name a file; a text, an array or an image
        object passes as it is.

        Raises:
            zoo.errors.InvalidInputError: naming the input that cannot be read.
        """
        if not isinstance(value, (str, Path)):
            return value
        if self.waveform:
            from zoo.audio import read_audio

            return read_audio(value, sample_rate=sample_rate, max_seconds=max_seconds)
        if self.input_kind == "image" and not Path(value).is_file():
            raise InvalidInputError(f"{value}: no such image file")
        return value

    def read_bytes(self, data: bytes, *, name: str, sample_rate: int | None = None,
                   max_seconds: float = 10.0) -> Any:
        """One input sent as a file's bytes (the server's uploads), as a family's ``preprocess`` takes it: decoded
        by the rules :meth:`read_input` applies to a file (:mod:`zoo.images`, :mod:`zoo.audio`); a text as UTF-8.

        Raises:
            zoo.errors.InvalidInputError: naming the input (``name``) that cannot be decoded.
        """
        if self.waveform:
            from zoo.audio import read_audio

            return read_audio(io.BytesIO(data), sample_rate=sample_rate, max_seconds=max_seconds, name=name)
        if self.input_kind == "image":
            return open_image(io.BytesIO(data), name=name)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"{name}: not UTF-8 text") from None

    def read_example(self, value: Any, *, sample_rate: int | None, max_seconds: float) -> Any:
        """A training or evaluation example's input as a family's ``preprocess`` takes it: a waveform is read from
        its file or from a Hugging Face datasets Audio feature (resampled to ``sample_rate``, cut to
        ``max_seconds``); any other input passes as it is (the data readers checked it)."""
        if not self.waveform:
            return value
        if isinstance(value, (str, Path)):
            from zoo.audio import read_audio

            return read_audio(value, sample_rate=sample_rate, max_seconds=max_seconds)
        if isinstance(value, dict) and "array" in value:   # Hugging Face datasets Audio feature
            import numpy as np

            from zoo.audio import resample

            value = resample(np.asarray(value["array"], dtype=np.float32), value["sampling_rate"], sample_rate)
            return value[: int(max_seconds * sample_rate)]
        return value

    def expand_inputs(self, values: Sequence[Any]) -> list[Any]:
        """`zoo predict`'s inputs with each one naming an existing ``.txt`` file replaced by its non-empty lines,
        for a task whose inputs are texts (:attr:`txt_lines`); other tasks' inputs as they are.

        Raises:
            zoo.errors.InvalidInputError: a .txt file that is not UTF-8.
        """
        if not self.txt_lines:
            return list(values)
        texts: list[Any] = []
        for value in values:
            path = Path(value) if isinstance(value, (str, Path)) else None
            if path is not None and path.suffix == ".txt" and path.is_file():
                try:
                    texts.extend(line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()
                                 if line.strip())
                except UnicodeDecodeError:
                    raise InvalidInputError(f"{path}: not UTF-8 text; re-save it as UTF-8") from None
            else:
                texts.append(value)
        return texts

    def timing_input(self, *, image_size: int, seq_len: int, seconds: float, sample_rate: int | None) -> Any:
        """A raw input of the requested size, for `zoo bench`'s timing (content does not change the cost)."""
        import numpy as np

        if self.input_kind == "image":
            from PIL import Image

            pixels = np.random.default_rng(0).integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)
            return Image.fromarray(pixels)
        if self.input_kind == "text":
            return " ".join(["the quick brown fox jumps over the lazy dog"] * (seq_len // 4 + 1))
        return np.random.default_rng(0).standard_normal(int(seconds * (sample_rate or 16000))).astype(np.float32)

    def example_inputs(self, count: int = 4) -> list[Any]:
        """Raw inputs of growing size (images of more rows, longer texts and clips): what
        :func:`zoo.testing.check_family` feeds a family when none are given."""
        import numpy as np

        def one(seed: int):
            rng = np.random.default_rng(seed)
            if self.input_kind == "image":
                from PIL import Image

                return Image.fromarray(rng.integers(0, 255, (48 + seed, 40, 3), dtype=np.uint8))
            if self.input_kind == "text":
                return " ".join(rng.choice(["good", "bad", "movie", "film", "very", "slow", "service"], 3 + seed))
            return rng.standard_normal(8000 + 1600 * seed).astype(np.float32)

        return [one(seed) for seed in range(count)]


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("image-cls", "image classification", "image", "image-classification", ("image_size",),
             default_input={"image_size": 224},
             prior_metrics={"imagenet-1k/top1": 1.0, "imagenet-real/top1": 0.5, "imagenet-v2/top1": 0.5},
             scenario_words=r"images?|photos?|pictures?|camera|x-?rays?|scans?|screenshots?|visual|pixels?",
             snippet_input="example.jpg", channels_last=True),
        Task("text-cls", "text classification", "text", "text-classification", ("max_tokens", "seq_len"),
             default_input={"max_tokens": 512, "seq_len": 128},
             prior_metrics={"glue/avg": 1.0, "glue/mnli-m": 1.0, "xnli/avg": 1.0, "xnli/en": 0.5},
             # Chinese XNLI fine-tuned and tested in Chinese: what Chinese encoders publish (not zero-shot transfer)
             language_metrics={"zh": ("xnli-zh/accuracy",)},
             scenario_words=r"texts?|tickets?|reviews?|sentences?|tweets?|e-?mails?|documents?|comments?|messages?|"
                            r"sentiment|headlines?|articles?|posts?|queries|intents?|chats?",
             snippet_input="an example text to classify", token_limited=True, length_grouped=True, txt_lines=True,
             bench_length="seq_len"),
        Task("audio-cls", "speech and audio classification", "audio", "audio-classification",
             ("sample_rate", "seconds"), default_input={"sample_rate": 16000, "seconds": 1.0},
             # Speech recognition error says something about an encoder, but less about classification.
             prior_metrics={"superb/ks": 1.0, "superb/er": 0.7, "superb/sid": 0.7, "audioset/mAP": 0.7,
                            "esc50/accuracy": 0.7, "librispeech-test-clean/wer": 0.3},
             scenario_words=r"audio|speech|spoken|voice|keywords?|wake[- ]?words?|hot[- ]?words?|sounds?|speakers?|"
                            r"recordings?|utterances?|clips?|acoustic|microphone|calls?",
             # Most specific first: "the speaker's emotion" is emotion recognition, "sounds" alone is sound events.
             focuses=(
                 Focus("keyword spotting",
                       r"key\s?words?|wake[- ]?words?|hot[- ]?words?|(?:voice|spoken|speech) commands?",
                       ("superb/ks", "speechcommands-v2/accuracy")),
                 Focus("emotion recognition", r"emotions?|emotional|moods?|affective", ("superb/er",)),
                 Focus("language identification",
                       r"language (?:id|identification|recognition|detection)|which language|"
                       r"(?:identify|detect|recogni[sz]e) (?:the )?language",
                       ("voxlingua107/accuracy",)),
                 Focus("speaker identification", r"speakers?|who is speaking|voice (?:id|biometrics?)",
                       ("superb/sid",)),
                 Focus("sound events", r"sound events?|environmental sounds?|sounds?|noises?|acoustic scenes?",
                       ("audioset/mAP", "esc50/accuracy")),
             ),
             snippet_input="example.wav", waveform=True, bench_length="seconds"),
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
