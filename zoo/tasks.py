"""The task types zoo knows and what each needs."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.errors import UnknownTaskError


@dataclass(frozen=True)
class Task:
    name: str             # the id used everywhere: in the registry, the CLI and run records
    title: str            # how people say it
    input_kind: str       # what one example is: "image", "text" or "audio"
    metric: str           # the metric adapt selects on
    pipeline_tag: str     # the Hugging Face pipeline tag of an adapted model
    input_fields: tuple[str, ...]  # registry `input` keys every entry of this task must have


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("image-cls", "image classification", "image", "accuracy", "image-classification", ("image_size",)),
        Task("text-cls", "text classification", "text", "accuracy", "text-classification",
             ("max_tokens", "seq_len")),
        Task("audio-cls", "speech and audio classification", "audio", "accuracy", "audio-classification",
             ("sample_rate", "seconds")),
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
