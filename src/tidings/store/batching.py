"""Group commit: many callers, one transaction.

:class:`GroupCommitter` collects items handed in by concurrent callers and writes them with
one call of its ``flush`` function (one transaction) per batch of up to ``max_items`` items.
A batch starts as soon as the previous one finished; ``max_delay`` lets the first item of an
idle period wait that long for companions. Each caller is answered only once its batch
committed, so an answer always means "durable"; if the flush fails, every caller of that
batch gets the exception and nothing of the batch was written.

The items of one :meth:`GroupCommitter.submit_many` call are never split between batches:
they are written in one transaction (a batch may exceed ``max_items`` to hold them), and
their caller waits on one future, not one per item. :meth:`GroupCommitter.post` hands in an
item without waiting for it at all (the worker's outcomes: nothing waits on them but the
next claim); a failed batch is then logged, and :meth:`GroupCommitter.aclose` still writes
everything posted before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("tidings.batching")

T = TypeVar("T")
R = TypeVar("R")


class Closed(RuntimeError):
    """The committer was closed; the item was not written."""


class GroupCommitter(Generic[T, R]):
    """Batches items into ``flush(items) -> results`` calls (one result per item, in order)."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_items: int = 1000,
        max_delay: float = 0.0,
        name: str = "commit",
    ):
        self._flush = flush
        self._max_items = max_items
        self._max_delay = max_delay
        self._name = name
        self._items: list[T] = []
        # One (future, item count) per caller, in the order of their items; no future for
        # posted items.
        self._waiters: list[tuple[asyncio.Future[list[R]] | None, int]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        self.items_written = 0

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"tidings-{self._name}"
            )

    async def submit(self, item: T) -> R:
        """Write one item; return its result once its batch committed."""
        return (await self.submit_many((item,)))[0]

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Write several items, all in one transaction (which they may share with others'
        items); their results in order."""
        if self._closing:
            raise Closed(f"{self._name} is closed")
        if not items:
            return []
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._items.extend(items)
        self._waiters.append((future, len(items)))
        self._wake.set()
        self._ensure_running()
        return await future

    def post(self, item: T) -> None:
        """Write one item with the next batch, without waiting for it (a failure is logged)."""
        if self._closing:
            raise Closed(f"{self._name} is closed")
        self._items.append(item)
        self._waiters.append((None, 1))
        self._wake.set()
        self._ensure_running()

    @property
    def backlog(self) -> int:
        """Items waiting for a batch."""
        return len(self._items)

    async def _run(self) -> None:
        while True:
            if not self._items:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._max_delay > 0 and len(self._items) < self._max_items:
                await asyncio.sleep(self._max_delay)
            # Whole callers only: as many as fit in max_items, at least one.
            taken, count = 1, self._waiters[0][1]
            while taken < len(self._waiters) and count + self._waiters[taken][1] <= self._max_items:
                count += self._waiters[taken][1]
                taken += 1
            items = self._items[:count]
            waiters = self._waiters[:taken]
            del self._items[:count]
            del self._waiters[:taken]
            try:
                results = await self._flush(items)
            except BaseException as exc:
                posted = 0
                for future, n in waiters:
                    if future is None:
                        posted += n
                    elif not future.done():
                        future.set_exception(exc)
                if posted:
                    log.error("%s: %d posted items not written", self._name, posted, exc_info=exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.batches += 1
            self.items_written += len(items)
            start = 0
            for future, n in waiters:
                if future is not None and not future.done():
                    future.set_result(list(results[start : start + n]))
                start += n

    async def aclose(self) -> None:
        """Write what was submitted, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
