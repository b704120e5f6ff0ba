"""The micro-batcher: concurrent submits share passes, keys never mix, failures stay isolated."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from camloc.web.batcher import MicroBatcher, QueueFull


def _run(coro):
    # A fresh event loop in its own thread: another test in the same worker (Playwright's sync
    # API) may leave an event loop registered as running in the main thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, timeout=30)).result()


class Recorder:
    """A batch function that records the batches it saw (and their thread)."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.batches: list[tuple[object, list]] = []
        self.threads: set[str] = set()
        self.delay = delay
        self.fail_on = fail_on
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, key, items):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.batches.append((key, list(items)))
            self.threads.add(threading.current_thread().name)
            if self.delay:
                time.sleep(self.delay)
            if self.fail_on is not None and self.fail_on in items:
                raise ValueError(f"bad item {self.fail_on}")
            return [(key, x * 2) for x in items]
        finally:
            with self._lock:
                self.active -= 1


def test_concurrent_submits_share_one_pass():
    rec = Recorder()

    async def main():
        b = MicroBatcher(rec, max_batch=16, max_wait=0.05)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit("cam", i) for i in range(10))), b.stats()
        finally:
            await b.close()

    results, stats = _run(main())
    assert results == [("cam", 2 * i) for i in range(10)]  # each caller gets its own answer
    assert len(rec.batches) == 1 and rec.batches[0][1] == list(range(10))
    assert stats["batches"] == 1 and stats["largest_batch"] == 10 and stats["items"] == 10
    assert all(name.startswith("camloc-forward") for name in rec.threads)


def test_keys_never_share_a_pass_and_batches_are_capped():
    rec = Recorder()

    async def main():
        b = MicroBatcher(rec, max_batch=4, max_wait=0.05)
        await b.start()
        try:
            jobs = [b.submit(("cam", ""), i) for i in range(6)] + [b.submit(("gradcam", ""), i) for i in range(3)]
            return await asyncio.gather(*jobs)
        finally:
            await b.close()

    results = _run(main())
    assert results[:6] == [(("cam", ""), 2 * i) for i in range(6)]
    assert results[6:] == [(("gradcam", ""), 2 * i) for i in range(3)]
    for _key, items in rec.batches:
        assert len(items) <= 4
        assert all(isinstance(x, int) for x in items)
    assert sorted(x for k, items in rec.batches if k == ("cam", "") for x in items) == list(range(6))
    assert sorted(x for k, items in rec.batches if k == ("gradcam", "") for x in items) == [0, 1, 2]


def test_requests_arriving_during_a_pass_form_the_next_batch():
    rec = Recorder(delay=0.2)

    async def main():
        b = MicroBatcher(rec, max_batch=16, max_wait=0.0)
        await b.start()
        try:
            first = asyncio.ensure_future(b.submit("k", 0))
            await asyncio.sleep(0.05)  # the first pass is running now
            rest = [asyncio.ensure_future(b.submit("k", i)) for i in range(1, 9)]
            return await asyncio.gather(first, *rest)
        finally:
            await b.close()

    _run(main())
    assert [items for _, items in rec.batches] == [[0], list(range(1, 9))]
    assert rec.max_active == 1  # the model never runs twice at once


def test_one_bad_item_fails_alone():
    rec = Recorder(fail_on=3)

    async def main():
        b = MicroBatcher(rec, max_batch=8, max_wait=0.05)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit("k", i) for i in range(6)), return_exceptions=True)
        finally:
            await b.close()

    results = _run(main())
    assert isinstance(results[3], ValueError) and "bad item 3" in str(results[3])
    assert [r for i, r in enumerate(results) if i != 3] == [("k", 2 * i) for i in (0, 1, 2, 4, 5)]


def test_abandoned_requests_are_skipped_and_queue_is_bounded():
    rec = Recorder(delay=0.2)

    async def main():
        b = MicroBatcher(rec, max_batch=2, max_wait=0.0, max_queue=3)
        await b.start()
        try:
            running = asyncio.ensure_future(b.submit("k", 0))
            await asyncio.sleep(0.05)
            waiting = [asyncio.ensure_future(b.submit("k", i)) for i in (1, 2, 3)]
            await asyncio.sleep(0.01)
            with pytest.raises(QueueFull):
                await b.submit("k", 99)
            waiting[0].cancel()  # the client went away before its turn
            return await asyncio.gather(running, *waiting[1:])
        finally:
            await b.close()

    assert _run(main()) == [("k", 0), ("k", 4), ("k", 6)]
    assert all(1 not in items and 99 not in items for _, items in rec.batches)


def test_bad_settings_and_unstarted_use_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda k, x: x, max_batch=0)
    with pytest.raises(ValueError, match="max_wait"):
        MicroBatcher(lambda k, x: x, max_wait=-1)
    with pytest.raises(RuntimeError, match="start"):
        _run(MicroBatcher(lambda k, x: x).submit("k", 1))
