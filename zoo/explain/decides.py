"""The model card's "How it decides": a finished run's most confident correct and most confident wrong validation
predictions, explained (integrated gradients, :mod:`zoo.explain.attribute`), the confusions that make up most of
its errors, and for text the words that push towards each class.

:func:`how_it_decides` returns the run record's ``how_it_decides`` section and writes the pictures (images and
audio) into the run's ``how_it_decides/`` folder; the card (:mod:`zoo.runs.card`) is drawn from the section alone.
With a time budget, examples are explained in turn (a correct one, a wrong one, the next of each...) until the
budget would run out at the pace measured so far; the first is always explained, at the fewest steps, as the
measurement.
"""

from __future__ import annotations

import re
import shutil
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.explain.attribute import AUTO_STEPS, COMPLETENESS_LIMIT, Explanation, explain_example
from zoo.explain.render import write_files
from zoo.tasks import get_task

HOW_IT_DECIDES = "how_it_decides"   # the record's section and the run's folder of pictures
TOP_UNITS = 5                       # units kept per example: the words, regions or seconds that pushed most
MAX_PAIRS = 5                       # confusion pairs shown
MAX_TEXT_CHARS = 600                # a text example is kept (and shown) up to here
# Text: the words that push towards each class come from the examples explained, and from up to this many more of
# each class's most confident correct predictions (for at most MAX_WORD_CLASSES classes); those cost about one
# short forward-and-backward pass each, and never more time than the examples themselves took.
WORDS_PER_CLASS = 3
MAX_WORD_CLASSES = 20
TOP_WORDS = 6


@dataclass(frozen=True)
class Pick:
    """One validation example to explain: its index, whether the model got it right, the label it predicted (the
    one explained) and the model's probability of it."""

    index: int
    kind: str            # "correct" or "wrong"
    label: int
    confidence: float


def pick_examples(probabilities, targets, *, count: int, multi_label: bool) -> list[Pick]:
    """The ``count`` most confident correct and ``count`` most confident wrong predictions, interleaved (correct,
    wrong, the next correct...) so that a budget that runs out leaves both kinds. A prediction is the top label;
    multi-label, it is correct when that label is one of the example's."""
    import numpy as np

    top, confidence, correct = _predictions(probabilities, targets, multi_label)
    ranked = {kind: [int(i) for i in np.argsort(-confidence, kind="stable") if bool(correct[i]) == (kind == "correct")]
              [:count] for kind in ("correct", "wrong")}
    picks = []
    for rank in range(count):
        for kind in ("correct", "wrong"):
            if rank < len(ranked[kind]):
                index = ranked[kind][rank]
                picks.append(Pick(index, kind, int(top[index]), float(confidence[index])))
    return picks


def _predictions(probabilities, targets, multi_label: bool):
    """Each example's top label, the model's probability of it, and whether it is right (multi-label: one of the
    example's labels)."""
    import numpy as np

    probabilities, targets = np.asarray(probabilities), np.asarray(targets)
    top = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(top)), top]
    correct = targets[np.arange(len(top)), top] > 0.5 if multi_label else top == targets
    return top, confidence, correct


def confusion_pairs(confusion: Sequence[Sequence[int]] | None, labels: Sequence[str],
                    limit: int = MAX_PAIRS) -> tuple[int, list[dict[str, Any]]]:
    """(errors, pairs): the number of misclassified examples in a confusion matrix (rows true, columns predicted)
    and its ``limit`` largest off-diagonal cells, largest first, each with its share of the errors."""
    if not confusion:
        return 0, []
    cells = [(count, true, predicted) for true, row in enumerate(confusion) for predicted, count in enumerate(row)
             if true != predicted and count > 0]
    errors = sum(count for count, _, _ in cells)
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return errors, [{"true": labels[true], "predicted": labels[predicted], "count": int(count),
                     "share": round(count / errors, 4)} for count, true, predicted in cells[:limit]]


def class_words(explanations: Sequence[Explanation], limit: int = TOP_WORDS) -> dict[str, dict[str, Any]]:
    """Per explained label, the words whose attributions towards it sum highest over the texts explained (each word
    lower-cased, stripped of punctuation), with the number of texts they came from."""
    totals: dict[str, dict[str, float]] = {}
    texts: dict[str, int] = {}
    for explanation in explanations:
        texts[explanation.label] = texts.get(explanation.label, 0) + 1
        words = totals.setdefault(explanation.label, {})
        for unit in explanation.units:
            word = unit.name.strip(string.punctuation + " ").lower()
            if word:
                words[word] = words.get(word, 0.0) + unit.attribution
    found = {}
    for label, words in sorted(totals.items()):
        best = sorted(((w, a) for w, a in words.items() if a > 0), key=lambda item: (-item[1], item[0]))[:limit]
        found[label] = {"texts": texts[label],
                        "words": [{"word": word, "attribution": round(value, 6)} for word, value in best]}
    return found


def how_it_decides(classifier, examples: Sequence[Any], probabilities, targets, *, count: int,
                   budget_s: float | None, rule: str, run_dir: Path, confusion=None, max_seconds: float = 10.0,
                   say: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Explain a finished run's validation predictions for its model card; returns the record's section and the
    files written (relative to ``run_dir``).

    ``examples`` are the validation examples (:class:`zoo.data.base.Example`) in the order of ``probabilities``
    (the model's, per label) and ``targets`` (label indices, or multi-hot rows for multi-label); ``count`` how many
    of each kind to explain, within ``budget_s`` seconds (None: no limit); ``rule`` the reason for both, recorded;
    ``confusion`` the validation confusion matrix (single-label). Pictures go to ``run_dir/how_it_decides/``,
    replaced whole. Raises whatever explaining raises: the caller decides what a failure means.
    """
    import captum.attr  # noqa: F401 (imported before the clock starts: importing is no part of the pace measured)

    say = say or (lambda message: None)
    started = time.perf_counter()
    deadline = None if budget_s is None else started + budget_s
    task = get_task(classifier.task)
    kind = task.input_kind
    folder = Path(run_dir) / HOW_IT_DECIDES
    discard_how_it_decides(run_dir)   # pictures of an earlier, interrupted attempt
    picks = pick_examples(probabilities, targets, count=count, multi_label=classifier.multi_label)
    say(f"how it decides: explaining up to {len(picks)} validation examples"
        + (f" within {budget_s:g} s" if budget_s is not None else ""))
    timer = _Pace(deadline)
    shown, explained, files, notes = [], [], [], []
    for pick in picks:
        if not timer.allows_another():
            notes.append(f"the time allowed ({budget_s:g} s) ran out after {len(shown)} of {len(picks)} examples; "
                         f"give --explain-card {count} to explain them all")
            break
        example = examples[pick.index]
        explanation = timer.explain(classifier, _read(task, classifier, example, max_seconds),
                                    name=example.id, label=classifier.labels[pick.label])
        entry = _entry(explanation, example, pick, classifier.labels)
        if kind == "text":
            entry["text"] = _text_of(explanation, example)[:MAX_TEXT_CHARS]
        else:
            stem = f"{len(shown) + 1:02d}-{pick.kind}-{_slug(example.id)}"
            (path,) = write_files(explanation, folder, stem)
            entry["file"] = f"{HOW_IT_DECIDES}/{path.name}"
            files.append(entry["file"])
        entry["seconds"] = round(timer.done(), 4)   # every step count tried, and the picture
        shown.append(entry)
        explained.append(explanation)
    words = None
    if kind == "text" and explained:
        extra = _word_picks(probabilities, targets, {pick.index for pick in picks}, classifier.multi_label)
        # the words never cost more than the examples did, nor run past the budget
        word_deadline = time.perf_counter() + (time.perf_counter() - started)
        word_timer = _Pace(word_deadline if deadline is None else min(deadline, word_deadline), first_free=False)
        for done, pick in enumerate(extra):
            if not word_timer.allows_another():
                notes.append(f"the words of each class come from {len(explained)} texts: the time allowed ran out "
                             f"before {len(extra) - done} more")
                break
            example = examples[pick.index]
            explained.append(word_timer.explain(classifier, _read(task, classifier, example, max_seconds),
                                                name=example.id, label=classifier.labels[pick.label]))
            word_timer.done()
        words = class_words(explained)
    errors, pairs = confusion_pairs(confusion, classifier.labels)
    right = int(_predictions(probabilities, targets, classifier.multi_label)[2].sum())
    section = {"method": "ig", "rule": rule, "count": count, "budget_s": budget_s, "examples": shown,
               "predictions": {"correct": right, "wrong": len(examples) - right},
               "errors": errors if confusion else None, "confusion_pairs": pairs, "class_words": words,
               "seconds": round(time.perf_counter() - started, 3), "notes": notes}
    say(f"how it decides: {len(shown)} examples explained in {section['seconds']:.1f} s")
    return section, files


class _Pace:
    """Explains one example after another against a deadline: integrated gradients at each of AUTO_STEPS in turn
    (as ``steps="auto"``), stopping early where the next step count would run past the deadline at the pace of the
    last; and says whether another example fits, at the pace of the slowest so far."""

    def __init__(self, deadline: float | None, *, first_free: bool = True) -> None:
        self.deadline, self.first_free = deadline, first_free
        self.began: float | None = None
        self.slowest = 0.0
        self.count = 0

    def allows_another(self) -> bool:
        if self.deadline is None or (self.count == 0 and self.first_free):
            return True
        return time.perf_counter() + self.slowest <= self.deadline

    def explain(self, classifier, example: Any, *, name: str, label: str) -> Explanation:
        self.began = time.perf_counter()
        if self.deadline is None:
            (explanation,) = explain_example(classifier, example, name=name, target=label, steps="auto")
            return explanation
        explanation, last_steps, last_s = None, 0, 0.0
        for steps in AUTO_STEPS:
            if explanation is not None and time.perf_counter() + last_s * steps / last_steps > self.deadline:
                break
            began = time.perf_counter()
            (explanation,) = explain_example(classifier, example, name=name, target=label, steps=steps)
            last_steps, last_s = steps, time.perf_counter() - began
            if explanation.completeness_error is not None and explanation.completeness_error <= COMPLETENESS_LIMIT:
                break
        return explanation

    def done(self) -> float:
        """Mark the example begun last as done; returns the seconds it took."""
        took = time.perf_counter() - self.began
        self.slowest = max(self.slowest, took)
        self.count += 1
        return took


def _read(task, classifier, example, max_seconds: float) -> Any:
    return task.read_example(example.input, sample_rate=classifier.sample_rate, max_seconds=max_seconds)


def _entry(explanation: Explanation, example, pick: Pick, labels: Sequence[str]) -> dict[str, Any]:
    return {"kind": pick.kind, "input": example.id, "true": [labels[i] for i in example.labels],
            "predicted": explanation.label, "score": explanation.score,
            "top": [{"name": unit.name, "span": list(unit.span), "attribution": round(unit.attribution, 6)}
                    for unit in explanation.top(TOP_UNITS)],
            "completeness_error": explanation.completeness_error, "steps": explanation.steps}


def _text_of(explanation: Explanation, example) -> str:
    return explanation.view if isinstance(explanation.view, str) else str(example.input)


def _slug(name: str) -> str:
    """A file-name-safe form of an example's id (``blue/001.png`` -> ``blue_001``)."""
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", name)
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:60] or "example"


def _word_picks(probabilities, targets, taken: set[int], multi_label: bool) -> list[Pick]:
    """Up to WORDS_PER_CLASS more of each class's most confident correct predictions (MAX_WORD_CLASSES classes at
    most, the most frequent predictions first), one of each class in turn."""
    picks = [pick for pick in pick_examples(probabilities, targets, count=len(probabilities),
                                            multi_label=multi_label)
             if pick.kind == "correct" and pick.index not in taken]
    by_class: dict[int, list[Pick]] = {}
    for pick in picks:
        if len(by_class.get(pick.label, [])) < WORDS_PER_CLASS:
            by_class.setdefault(pick.label, []).append(pick)
    classes = sorted(by_class, key=lambda label: (-len(by_class[label]), label))[:MAX_WORD_CLASSES]
    return [by_class[label][rank] for rank in range(WORDS_PER_CLASS) for label in classes
            if rank < len(by_class[label])]


def discard_how_it_decides(run_dir: Path) -> None:
    """Remove the pictures of a "How it decides" that was not finished."""
    shutil.rmtree(Path(run_dir) / HOW_IT_DECIDES, ignore_errors=True)
