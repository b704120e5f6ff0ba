"""Options and helpers shared by CLI verbs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any



def _console() -> Any:
    """The shared rich Console on stderr, made on first use (importing rich costs time that
    `camloc --help` and usage errors should not pay)."""
    value = globals().get("console")
    if value is None:
        from rich.console import Console

        value = globals()["console"] = Console(stderr=True)
    return value


def __getattr__(name: str) -> Any:  # ``from camloc.commands.common import console``
    if name == "console":
        return _console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: seconds between the plain progress lines printed when stderr is not a terminal; the
#: environment variable ``CAMLOC_PROGRESS_EVERY`` (seconds, >= 0) overrides it
PLAIN_PROGRESS_EVERY = 30.0


def _plain_interval() -> float:
    """:data:`PLAIN_PROGRESS_EVERY`, or ``CAMLOC_PROGRESS_EVERY`` when that is a number >= 0."""
    import math
    import os

    raw = os.environ.get("CAMLOC_PROGRESS_EVERY")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if math.isfinite(value) and value >= 0:
            return value
    return PLAIN_PROGRESS_EVERY


class _PlainLines:
    """Progress as plain lines for a log file or a pipe: ``description: done/total (p%),
    elapsed, left`` at most every ``every`` seconds, and a last line when a run that printed
    any finishes."""

    def __init__(self, console: Any, description: str, every: float) -> None:
        import time

        self._now = time.monotonic
        self.console, self.description, self.every = console, description, every
        self.t0 = self.last = self._now()
        self.printed = False
        self.done: int = 0
        self.total: int | None = None

    def line(self) -> None:
        done, total = self.done, self.total
        el = self._now() - self.t0
        pct = left = ""
        if total:  # None while the inputs are still being listed
            pct = f" ({100.0 * done / total:.0f}%)"
            if 0 < done < total:
                left = f", about {_clock(el * (total - done) / done)} left"
        shown = "?" if total is None else total
        self.console.print(f"{self.description}: {done}/{shown}{pct}, {_clock(el)} elapsed{left}",
                           highlight=False, soft_wrap=True)

    def __call__(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total
        if self._now() - self.last >= self.every:
            self.last, self.printed = self._now(), True
            self.line()

    def finish(self) -> None:
        if self.printed and self.total and self.done >= self.total:
            self.line()


@contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A rich progress bar; yields ``update(done, total)``. The bar appears on the first update,
    so an error found before any work (a bad option, a locked folder) prints alone.

    ``total`` may be ``None`` while the inputs are still being listed (a folder walk, a list read
    from a pipe): the line then says ``done/?`` without a percentage or an estimate.

    When stderr is not a terminal (a log file, a pipe, a batch job) rich would draw nothing until
    the end; instead a plain line ``description: done/total (p%), elapsed, left`` is printed every
    :data:`PLAIN_PROGRESS_EVERY` seconds, and a last one when such a run finishes (runs shorter
    than that, and failed runs, print nothing more)."""
    console = _console()
    if not console.is_terminal:
        plain = _PlainLines(console, description, _plain_interval())
        yield plain
        plain.finish()  # not reached when the run raised
        return

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    transient=False)
    task = None

    def update(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            prog.start()
            task = prog.add_task(description, total=None)
        prog.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if task is not None:
            prog.stop()


def _clock(seconds: float) -> str:
    """``3725.0`` -> ``"1:02:05"``; ``65`` -> ``"1:05"``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def print_failures(failed: list[dict[str, str]], name_key: str = "path", reason_key: str = "error",
                   where: str = "", label: str = "failed", show: int = 10) -> None:
    """Print the first ``show`` failed items (name and reason) and how many more there are."""
    from rich.text import Text

    for rec in failed[:show]:
        # soft_wrap: a long path stays on one line for the user to copy; markup in a file name or
        # an error message is printed as it is
        line = Text("  ") + Text(label, style="red") + Text(f" {rec.get(name_key)}: "
                                                            f"{rec.get(reason_key)}")
        _console().print(line, soft_wrap=True)
    if len(failed) > show:
        _console().print(f"  ... and {len(failed) - show} more" + (f" (see {where})" if where else ""))
