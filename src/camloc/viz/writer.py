"""An ordered background writer: jobs run on worker threads, results come back in the order the
jobs were given.

``camloc explain`` draws and writes each image's overlay PNG after the network's forward pass.
Run on the main thread, that work and the ``fsync`` of every file wait for each other and for
the next batch; handed to :class:`OrderedWriter`, they overlap the next forward pass (NumPy,
OpenCV, ISA-L's deflate and file I/O release the GIL), while the caller still sees each image's
result in input order, so ``results.jsonl`` keeps its order.

- Bounded: at most ``max_pending`` jobs are queued or running; :meth:`OrderedWriter.submit`
  waits for the oldest one beyond that, so memory does not grow with the number of images.
- Errors: a job's exception is that job's result (:attr:`Done.error`), never raised, so one bad
  image does not stop the others. ``KeyboardInterrupt`` and other non-``Exception`` errors of a
  job are raised in the caller's thread.
- Leaving the ``with`` block on an error (Ctrl-C included) drops the jobs not yet started and
  waits for the running ones (files are written atomically, so nothing is left half-written);
  their results are dropped.
- ``workers=0`` runs each job inside :meth:`~OrderedWriter.submit` (no threads): the same results.

>>> with OrderedWriter(workers=2, max_pending=4) as w:
...     got = []
...     for i in range(6):
...         got += w.submit(i, lambda x: x * x, i)
...     got += w.drain()
>>> [(d.tag, d.value, d.error) for d in got]
[(0, 0, None), (1, 1, None), (2, 4, None), (3, 9, None), (4, 16, None), (5, 25, None)]
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

__all__ = ["Done", "OrderedWriter"]


class Done(NamedTuple):
    """One finished job: the ``tag`` it was given, its return ``value``, or the ``error`` it
    raised (then ``value`` is ``None``)."""

    tag: Any
    value: Any
    error: Exception | None


class OrderedWriter:
    """Run ``fn(*args)`` jobs on ``workers`` threads and collect their results in submission
    order (see the module docstring). Use as a context manager."""

    def __init__(self, workers: int = 1, max_pending: int = 32,
                 name: str = "camloc-writer") -> None:
        if workers < 0 or max_pending < 1:
            raise ValueError(f"OrderedWriter: workers={workers} (>= 0), "
                             f"max_pending={max_pending} (>= 1)")
        self.workers = workers
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name) if workers else None
        self._pending: collections.deque[tuple[Any, Future[Any]]] = collections.deque()
        self._closed = False

    def __enter__(self) -> OrderedWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(cancel=exc_type is not None)

    @property
    def pending(self) -> int:
        """Jobs given and not yet handed back."""
        return len(self._pending)

    def submit(self, tag: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Done]:
        """Queue ``fn(*args, **kwargs)`` under ``tag``. Returns the jobs finished by now that
        are next in order (possibly none); waits first while ``max_pending`` jobs are pending."""
        if self._closed:
            raise RuntimeError("OrderedWriter: submit after close")
        done: list[Done] = []
        while len(self._pending) >= self.max_pending:
            done.append(self._settle(*self._pending[0]))
            self._pending.popleft()
        fut: Future[Any]
        if self._pool is None:
            fut = Future()
            try:
                fut.set_result(fn(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 - the job's own error is its result
                fut.set_exception(exc)
        else:
            fut = self._pool.submit(fn, *args, **kwargs)
        self._pending.append((tag, fut))
        done.extend(self.ready())
        return done

    def ready(self) -> list[Done]:
        """The finished jobs at the head of the order (never waits)."""
        done = []
        while self._pending and self._pending[0][1].done():
            done.append(self._settle(*self._pending[0]))
            self._pending.popleft()
        return done

    def drain(self) -> list[Done]:
        """Wait for every pending job; their results in order."""
        done = []
        while self._pending:
            done.append(self._settle(*self._pending[0]))
            self._pending.popleft()
        return done

    def close(self, cancel: bool = False) -> None:
        """Stop the threads. ``cancel``: drop the jobs not started (the running ones are waited
        for) and forget every pending result; else wait for all (their results are dropped:
        call :meth:`drain` first to have them)."""
        if self._closed:
            return
        self._closed = True
        if cancel:
            for _, fut in self._pending:
                fut.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)

    @staticmethod
    def _settle(tag: Any, fut: Future[Any]) -> Done:
        exc = fut.exception()  # waits
        if exc is None:
            return Done(tag, fut.result(), None)
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit, ...: not one job's failure
        return Done(tag, None, exc)
