"""Dynamic batching: items that arrive within ``max_wait_ms`` of the first one waiting run as one batch of up to
``max_batch``, and each caller gets its own rows back.

The model runs on one worker thread, one batch at a time, so the event loop keeps accepting and reading requests
while it computes, and a model that is not thread-safe is never entered twice. Requests hand in items already
decoded and preprocessed, so an input that cannot be read fails its own request before it is queued and never its
batch-mates; a model failure fails only the batch it happened in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("zoo.serve")


class BatchFailedError(RuntimeError):
    """The model failed on the batch an item was in (the cause is chained and logged)."""


@dataclass
class _Waiting:
    item: dict[str, Any]
    future: asyncio.Future


class Batcher:
    """Collects preprocessed items from concurrent requests into batches for ``score`` (items -> one row each).

    ``on_batch(size)`` is told every batch's size, ``on_depth(n)`` the number of items waiting, for the metrics.
    """

    def __init__(self, score: Callable[[list[dict[str, Any]]], Sequence[Any]], *, max_batch: int,
                 max_wait_ms: float, on_batch: Callable[[int], None] | None = None,
                 on_depth: Callable[[int], None] | None = None) -> None:
        self.score = score
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch or (lambda size: None)
        self.on_depth = on_depth or (lambda depth: None)
        self._queue: asyncio.Queue[_Waiting | None] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = False

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-serve-model")
        self._task = asyncio.create_task(self._run(), name="zoo-serve-batcher")

    async def close(self) -> None:
        """Score every item still waiting, then stop (the server's shutdown drains the queue this way)."""
        if self._task is None or self._queue is None:
            return
        await self._queue.put(None)
        await self._task
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, items: Sequence[dict[str, Any]]) -> list[Any]:
        """The rows of ``items``, in order, once their batches have run.

        Raises:
            BatchFailedError: the model failed on a batch holding one of them.
        """
        if self._queue is None:
            raise RuntimeError("the batcher has not started")
        loop = asyncio.get_running_loop()
        waiting = [_Waiting(item, loop.create_future()) for item in items]
        for entry in waiting:
            self._queue.put_nowait(entry)
        self.on_depth(self._queue.qsize())
        return list(await asyncio.gather(*(entry.future for entry in waiting)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = await self._collect(first, loop)
            self.on_depth(self._queue.qsize())
            await self._score(batch, loop)
        # The stop sign came: whatever is still queued is scored too, since an accepted request is answered.
        while True:
            batch = self._take_ready([])
            if not batch:
                break
            await self._score(batch, loop)
        self.on_depth(0)

    async def _collect(self, first: _Waiting, loop) -> list[_Waiting]:
        """``first`` and what arrives within max_wait of it, up to max_batch (less if the stop sign comes)."""
        batch = [first]
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch and not self._stopping:
            batch = self._take_ready(batch)
            timeout = deadline - loop.time()
            if len(batch) >= self.max_batch or self._stopping or timeout <= 0:
                break
            try:
                entry = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                break
            if entry is None:
                self._stopping = True
            else:
                batch.append(entry)
        return batch

    def _take_ready(self, batch: list[_Waiting]) -> list[_Waiting]:
        """``batch`` topped up to max_batch with what is queued now, without waiting (noting the stop sign)."""
        while len(batch) < self.max_batch and not self._queue.empty():
            entry = self._queue.get_nowait()
            if entry is None:
                self._stopping = True
            else:
                batch.append(entry)
        return batch

    async def _score(self, batch: list[_Waiting], loop) -> None:
        live = [entry for entry in batch if not entry.future.done()]   # a caller that hung up is not scored
        if not live:
            return
        self.on_batch(len(live))
        try:
            rows = await loop.run_in_executor(self._executor, self.score, [entry.item for entry in live])
        except Exception as exc:   # the model's own failure: this batch's callers get a 500, the server goes on
            log.exception("the model failed on a batch of %d", len(live))
            failure = BatchFailedError(f"the model failed on this batch ({type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0] if str(exc) else 'no message'})")
            for entry in live:
                if not entry.future.done():
                    entry.future.set_exception(failure)
            return
        for entry, row in zip(live, rows, strict=True):
            if not entry.future.done():
                entry.future.set_result(row)
