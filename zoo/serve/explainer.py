"""`POST /explain`: explanations (:func:`zoo.explain.attribute.explain_example`) for the server, with their cost
bounded.

An explanation takes seconds, so it never runs on the event loop nor on the batcher's thread: explanations run on
a thread of their own, one at a time, with at most :data:`MAX_QUEUED` requests running or waiting (more are told
to come back later), at most :data:`MAX_INPUTS` inputs a request and :data:`MAX_STEPS` integrated-gradients steps.
They run on a copy of the model of their own, loaded on the first request: integrated gradients on a layer (text's
embeddings) hooks that layer while it runs, which must never touch the model the batcher scores with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from zoo.explain.attribute import Explanation, explain_example

MAX_INPUTS = 4    # inputs in one /explain request at most
MAX_QUEUED = 4    # /explain requests running or waiting at once; more are refused with 429
MAX_STEPS = 64    # integrated gradients' steps at most (auto tries up to this many)


class ExplainerBusyError(RuntimeError):
    """:data:`MAX_QUEUED` explanation requests are already running or waiting."""


class Explainer:
    """Runs explanations for the server on one thread of its own, on the classifier ``load()`` gives (loaded there,
    on first use); ``on_explained(explanation)`` is told of each one made, for the metrics."""

    def __init__(self, load: Callable[[], Any], *,
                 on_explained: Callable[[Explanation], None] | None = None) -> None:
        self.load = load
        self.on_explained = on_explained or (lambda explanation: None)
        self._classifier: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._queued = 0   # counted on the event loop's thread only, so it needs no lock

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-serve-explain")

    async def close(self) -> None:
        """Let the explanation running finish, then stop."""
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True)
            self._executor = None

    async def explain(self, examples: Sequence[tuple[str, Any]], *, method: str, target: str | None,
                      steps: int | str) -> list[Explanation]:
        """The explanations of each (name, example as the family's ``preprocess`` takes it), in order.

        Raises:
            ExplainerBusyError: too many explanation requests are running or waiting.
            zoo.errors.ZooError: an example with nothing to attribute, an unknown ``target``.
        """
        if self._executor is None:
            raise RuntimeError("the explainer has not started")
        if self._queued >= MAX_QUEUED:
            raise ExplainerBusyError(f"{self._queued} explanation requests are running or waiting; try again "
                                     "later")
        self._queued += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._run, list(examples), method, target, steps)
        finally:
            self._queued -= 1

    def _run(self, examples: list[tuple[str, Any]], method: str, target: str | None,
             steps: int | str) -> list[Explanation]:
        if self._classifier is None:
            self._classifier = self.load()
        found = []
        for name, example in examples:
            for explanation in explain_example(self._classifier, example, name=name, method=method, target=target,
                                               steps=steps):
                self.on_explained(explanation)
                found.append(explanation)
        return found
