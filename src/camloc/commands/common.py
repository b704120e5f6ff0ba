"""Options and helpers shared by CLI verbs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from camloc.errors import ConfigError


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


#: seconds between the plain progress lines printed when stderr is not a terminal
PLAIN_PROGRESS_EVERY = 30.0


@contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A rich progress bar; yields ``update(done, total)``. The bar appears on the first update,
    so an error found before any work (a bad option, a locked folder) prints alone.

    When stderr is not a terminal (a log file, a pipe, a batch job) rich would draw nothing until
    the end; instead a plain line ``description: done/total (p%), elapsed, left`` is printed every
    :data:`PLAIN_PROGRESS_EVERY` seconds, and a last one when such a run finishes (runs shorter
    than that print nothing)."""
    import time

    console = _console()
    if not console.is_terminal:
        t0 = time.monotonic()
        last = t0
        printed = False
        state = [0, 0]

        def line(done: int, total: int) -> None:
            el = time.monotonic() - t0
            left = f", about {_clock(el * (total - done) / done)} left" if 0 < done < total else ""
            pct = f" ({100.0 * done / total:.0f}%)" if total else ""
            console.print(f"{description}: {done}/{total}{pct}, {_clock(el)} elapsed{left}",
                          highlight=False, soft_wrap=True)

        def plain(done: int, total: int) -> None:
            nonlocal last, printed
            state[:] = [done, total]
            now = time.monotonic()
            if now - last >= PLAIN_PROGRESS_EVERY:
                last, printed = now, True
                line(done, total)

        try:
            yield plain
        finally:
            if printed and state[1] and state[0] >= state[1]:
                line(*state)
        return

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    transient=False)
    task = None

    def update(done: int, total: int) -> None:
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


def parse_classes(value: str | None, class_names: list[str]) -> list[int] | None:
    """``"285,281"`` or ``"Egyptian cat,tabby"`` -> class ids (names match a full name or its
    first comma-separated synonym, case-insensitively; ``;`` separates names that contain commas).

    A name that several classes share (ImageNet has two 'crane's: the bird, 134, and the machine,
    517) is refused with every matching id, so the user picks one.

    >>> parse_classes("b,0", ["a", "b"])
    [1, 0]
    """
    if value is None or not value.strip():
        return None
    lookup: dict[str, list[int]] = {}
    for i, name in enumerate(class_names):
        for alias in {name.lower().strip(), name.split(",")[0].strip().lower()}:
            if alias and i not in lookup.setdefault(alias, []):
                lookup[alias].append(i)
    ids = []
    for item in value.split(";" if ";" in value else ","):
        item = item.strip()
        if not item:
            continue
        if item.isdigit():
            idx = int(item)
            if idx >= len(class_names):
                raise ConfigError(f"--classes: id {idx} is out of range (the model has "
                                  f"{len(class_names)} classes, ids 0..{len(class_names) - 1})")
            ids.append(idx)
            continue
        found = lookup.get(item.lower(), [])
        if not found:
            raise ConfigError(f"--classes: unknown class {item!r} (give ids or names)")
        if len(found) > 1:
            which = ", ".join(f"{i} ({class_names[i]})" for i in found)
            raise ConfigError(f"--classes: {item!r} names {len(found)} classes: {which}; give the "
                              f"id of the one you mean")
        ids.append(found[0])
    if not ids:
        raise ConfigError(f"--classes {value!r}: no class ids or names in it")
    return ids


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
