"""Options and helpers shared by CLI verbs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from camloc.errors import ConfigError

console = Console(stderr=True)


@contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A rich progress bar; yields ``update(done, total)``."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def parse_classes(value: str | None, class_names: list[str]) -> list[int] | None:
    """``"285,281"`` or ``"Egyptian cat,tabby"`` -> class ids (names match a full name or its
    first comma-separated synonym, case-insensitively)."""
    if not value:
        return None
    ids = []
    lookup: dict[str, int] = {}
    for i, name in enumerate(class_names):
        lookup.setdefault(name.lower(), i)
        lookup.setdefault(name.split(",")[0].strip().lower(), i)
    for item in value.split(";" if ";" in value else ","):
        item = item.strip()
        if not item:
            continue
        if item.isdigit():
            idx = int(item)
            if idx >= len(class_names):
                raise ConfigError(f"--classes: id {idx} is out of range (model has "
                                  f"{len(class_names)} classes)")
            ids.append(idx)
        elif item.lower() in lookup:
            ids.append(lookup[item.lower()])
        else:
            raise ConfigError(f"--classes: unknown class {item!r} (give ids or names)")
    return ids


def print_failures(failed: list[dict[str, str]], name_key: str = "path", reason_key: str = "error",
                   where: str = "", label: str = "failed", show: int = 10) -> None:
    """Print the first ``show`` failed items (name and reason) and how many more there are."""
    for rec in failed[:show]:
        console.print(f"  [red]{label}[/red] {rec.get(name_key)}: {rec.get(reason_key)}")
    if len(failed) > show:
        console.print(f"  ... and {len(failed) - show} more" + (f" (see {where})" if where else ""))
