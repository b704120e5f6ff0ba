"""Slow requests the page can follow and cancel: estimated time, progress, Cancel.

A client names its request (``job`` form field of ``POST /api/explain``); while it waits in the
slow lane or runs, ``GET /api/jobs/{job}`` says where it is (queued, running: passes done of the
expected, seconds elapsed, estimated seconds left) and ``DELETE /api/jobs/{job}`` cancels it: a
queued request never starts, a running one stops at its next forward pass (the engine calls
:meth:`Job.tick` before every pass of the network), and the request answers 409.

>>> jobs = Jobs()
>>> j = jobs.create("a1", "scorecam", estimate_s=12.0, expected_passes=10)
>>> j.start(); j.tick(); jobs.get("a1").to_dict()["state"], jobs.get("a1").passes
('running', 1)
>>> jobs.cancel("a1")
True
>>> j.tick()  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
Cancelled: request 'a1' was cancelled
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from typing import Any

__all__ = ["Job", "Jobs", "Cancelled", "JOB_ID"]

#: what a client may call its request
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Cancelled(Exception):
    """The client cancelled the request (answered 409)."""


class Job:
    """One tracked request. Thread-safe enough for one writer (the lane's worker) and readers."""

    def __init__(self, job_id: str, method: str, estimate_s: float | None,
                 expected_passes: int | None) -> None:
        self.id = job_id
        self.method = method
        self.estimate_s = estimate_s
        self.expected_passes = expected_passes
        self.state = "queued"
        self.passes = 0
        self.created = time.monotonic()
        self.started: float | None = None
        self.finished: float | None = None
        self.cancel_event = threading.Event()
        #: what the request adds to its state (a batch: its run folder, images done and failed)
        self.extra: dict[str, Any] = {}

    def start(self) -> None:
        """Called by the worker as the request's first pass begins (raises if cancelled)."""
        if self.cancel_event.is_set():
            raise Cancelled(f"request {self.id!r} was cancelled")
        self.state = "running"
        self.started = time.monotonic()

    def tick(self) -> None:
        """One forward pass is about to run: count it, or stop here when cancelled."""
        if self.cancel_event.is_set():
            raise Cancelled(f"request {self.id!r} was cancelled")
        self.passes += 1

    def finish(self, state: str) -> None:
        self.state = "cancelled" if self.cancel_event.is_set() and state != "done" else state
        self.finished = time.monotonic()

    def to_dict(self) -> dict[str, Any]:
        now = time.monotonic()
        elapsed = (self.finished or now) - self.started if self.started is not None else 0.0
        left: float | None = None
        fraction: float | None = None
        if self.state == "running":
            if self.expected_passes and self.passes >= 2:
                fraction = min(0.99, self.passes / self.expected_passes)
                per_pass = elapsed / max(self.passes - 1, 1)
                left = per_pass * max(self.expected_passes - self.passes, 0)
            elif self.estimate_s:
                fraction = min(0.95, elapsed / self.estimate_s)
                left = max(0.0, self.estimate_s - elapsed)
        elif self.state == "done":
            fraction = 1.0
        return {"job": self.id, "method": self.method, "state": self.state,
                "passes": self.passes, "expected_passes": self.expected_passes,
                "estimate_s": None if self.estimate_s is None else round(self.estimate_s, 1),
                "elapsed_s": round(elapsed, 2),
                "queued_s": round(((self.started or now) - self.created), 2),
                "fraction": None if fraction is None else round(fraction, 3),
                "left_s": None if left is None else round(left, 1), **self.extra}


class Jobs:
    """The last ``keep`` tracked requests, by id."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, job_id: str, method: str, estimate_s: float | None = None,
               expected_passes: int | None = None) -> Job:
        job = Job(job_id, method, estimate_s, expected_passes)
        with self._lock:
            old = self._jobs.pop(job_id, None)
            if old is not None and old.state in ("queued", "running"):
                self._jobs[job_id] = old
                raise ValueError(f"job={job_id!r}: a request with this id is still running")
            self._jobs[job_id] = job
            while len(self._jobs) > self.keep:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].state in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def running(self) -> bool:
        with self._lock:
            return any(j.state == "running" for j in self._jobs.values())

    def cancel(self, job_id: str) -> bool:
        """Ask the request to stop; ``False`` when no such request is queued or running."""
        job = self.get(job_id)
        if job is None or job.state not in ("queued", "running"):
            return False
        job.cancel_event.set()
        return True
