"""Micro-batching: concurrent requests become one forward pass.

Requests are queued; a collector takes the first one, waits up to ``max_wait`` seconds (a few
milliseconds) for more, up to ``max_batch`` items, groups them by key (requests with different
methods or layers cannot share a pass) and runs each group in ONE worker thread, so the event loop
keeps accepting uploads while the model runs and the model never runs twice at once. Requests that
arrive during a pass are collected for the next one, so under load batches fill up by themselves.

One failing item never fails the others: when a group raises, its items are rerun one by one and
only the culprit gets the exception.

>>> import asyncio
>>> async def demo():
...     b = MicroBatcher(lambda key, items: [key * x for x in items], max_batch=8, max_wait=0.01)
...     await b.start()
...     try:
...         return await asyncio.gather(*(b.submit(10, i) for i in range(4))), b.stats()["batches"]
...     finally:
...         await b.close()
>>> asyncio.run(demo())
([0, 10, 20, 30], 1)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MicroBatcher", "QueueFull"]

log = logging.getLogger("camloc.web")


class QueueFull(Exception):
    """More requests are waiting than the batcher accepts (the server answers 503)."""


@dataclass
class _Item:
    key: Hashable
    payload: Any
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collect ``submit(key, item)`` calls into batches for ``run(key, items) -> results``.

    ``run`` is called in a single worker thread and must return one result per item, in order.
    ``max_queue`` bounds the waiting requests (``submit`` raises :class:`QueueFull` beyond it).
    """

    def __init__(self, run: Callable[[Hashable, list[Any]], list[Any]], max_batch: int = 16,
                 max_wait: float = 0.005, max_queue: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch}: must be >= 1")
        if max_wait < 0:
            raise ValueError(f"max_wait={max_wait}: must be >= 0")
        self._run = run
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait)
        self.max_queue = int(max_queue)
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._batches = 0
        self._items = 0
        self._largest = 0
        self._busy_seconds = 0.0

    async def start(self) -> None:
        """Start the collector (call from the running event loop)."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camloc-forward")
        self._task = asyncio.get_running_loop().create_task(self._collect(self._queue))

    async def close(self) -> None:
        """Stop collecting; waiting requests get ``asyncio.CancelledError``."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if not item.future.done():
                    item.future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, key: Hashable, payload: Any) -> Any:
        """Queue one item and wait for its result (or its exception)."""
        if self._queue is None or self._task is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} requests are already waiting")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(key, payload, fut))
        return await fut

    def stats(self) -> dict[str, Any]:
        """Batches run, items served, the largest batch, mean batch size, seconds in passes."""
        return {"batches": self._batches, "items": self._items, "largest_batch": self._largest,
                "mean_batch": round(self._items / self._batches, 3) if self._batches else 0.0,
                "busy_seconds": round(self._busy_seconds, 3),
                "waiting": self._queue.qsize() if self._queue is not None else 0,
                "max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1000}

    async def _collect(self, queue: asyncio.Queue[_Item]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            groups: dict[Hashable, list[_Item]] = {}
            for item in batch:
                groups.setdefault(item.key, []).append(item)
            for key, items in groups.items():
                await self._run_group(loop, key, items)

    async def _run_group(self, loop: asyncio.AbstractEventLoop, key: Hashable,
                         items: list[_Item]) -> None:
        live = [it for it in items if not it.future.done()]  # skip requests already abandoned
        if not live:
            return
        try:
            results = await self._call(loop, key, live)
        except Exception as exc:  # noqa: BLE001 - isolate the culprit below
            if len(live) == 1:
                _settle(live[0], exc=exc)
                return
            log.info("batch of %d failed (%s); rerunning one by one", len(live), exc)
            for it in live:
                try:
                    (res,) = await self._call(loop, key, [it])
                except Exception as one_exc:  # noqa: BLE001
                    _settle(it, exc=one_exc)
                else:
                    _settle(it, result=res)
            return
        for it, res in zip(live, results):
            _settle(it, result=res)

    async def _call(self, loop: asyncio.AbstractEventLoop, key: Hashable,
                    items: list[_Item]) -> list[Any]:
        start = time.perf_counter()
        results = await loop.run_in_executor(self._executor, self._run, key,
                                             [it.payload for it in items])
        self._busy_seconds += time.perf_counter() - start
        if len(results) != len(items):
            raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
        self._batches += 1
        self._items += len(items)
        self._largest = max(self._largest, len(items))
        return list(results)


def _settle(item: _Item, result: Any = None, exc: BaseException | None = None) -> None:
    if item.future.done():
        return
    if exc is not None:
        item.future.set_exception(exc)
    else:
        item.future.set_result(result)
