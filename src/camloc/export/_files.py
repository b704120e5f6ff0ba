"""A folder of many small files replaced as a whole: written under a hidden staging name, then
renamed into place, so a reader never sees a half-written export and files of images that are no
longer in the run never linger.

Only a folder camloc made is ever replaced: each export folder holds the marker file
``.camloc-export`` (earlier camloc versions: an ``index.jsonl`` of their own), and a folder of
the same name without it (a user's own ``yolo/`` labels, say) is refused, never deleted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from camloc.io import refuse_symlink

__all__ = ["MARKER", "check_replaceable", "staged_folder", "remove_stale_stages"]

_STAGE, _OLD = ".camloc-staging-", ".camloc-old-"
#: The file that marks an export folder as camloc's (safe to replace on the next export).
MARKER = ".camloc-export"


def _made_by_camloc(folder: Path) -> bool:
    if (folder / MARKER).is_file():
        return True
    try:  # an export of an earlier camloc: its index.jsonl names the image of each file
        with open(folder / "index.jsonl", encoding="utf-8") as fh:
            first = json.loads(fh.readline())
        return isinstance(first, dict) and "image" in first and (
            "label" in first or "annotation" in first)
    except (OSError, ValueError):
        return False


def check_replaceable(target: Path) -> None:
    """Raise :class:`~camloc.errors.ConfigError` unless ``target`` is missing or an export
    folder camloc made (``staged_folder`` may replace it): a link, a file, or a folder without
    camloc's marker is the user's and is never deleted."""
    from camloc.errors import ConfigError

    target = Path(target)
    refuse_symlink(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"{target} exists and is not a folder; remove it or choose another --out")
    if not _made_by_camloc(target):
        raise ConfigError(f"{target} exists and was not written by camloc (no {MARKER} in it); "
                          f"camloc replaces only its own exports: move it away or choose "
                          f"another --out")


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``target``; when the block succeeds it replaces
    ``target`` (two renames: the old folder out of the way, the new one in, then the old one is
    deleted). When the block fails ``target`` is left as it was. Only a folder camloc made is
    replaced (see :func:`check_replaceable`); the new one is marked as camloc's."""
    target = Path(target)
    check_replaceable(target)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}{_STAGE}", dir=target.parent))
    try:
        (stage / MARKER).write_text("written by camloc; replaced on the next export\n",
                                    encoding="utf-8")
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    check_replaceable(target)  # again: the block may have run long
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}{_OLD}", dir=target.parent))
        os.replace(target, old / "x")
    os.replace(stage, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_stages(parent: Path, name: str) -> None:
    """Delete staging and old folders of ``parent/name`` left by a killed run (call it while
    holding the output folder's lock)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(parent):
            if entry.name.startswith((f".{name}{_STAGE}", f".{name}{_OLD}")) \
                    and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
