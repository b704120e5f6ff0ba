"""A folder of many small files replaced as a whole: written under a hidden staging name, then
renamed into place, so a reader never sees a half-written export and files of images that are no
longer in the run never linger."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from camloc.io import refuse_symlink

__all__ = ["staged_folder", "remove_stale_stages"]

_STAGE, _OLD = ".staging-", ".old-"


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``target``; when the block succeeds it replaces
    ``target`` (two renames: the old folder out of the way, the new one in, then the old one is
    deleted). When the block fails ``target`` is left as it was."""
    target = Path(target)
    refuse_symlink(target)
    if target.exists() and not target.is_dir():
        from camloc.errors import ConfigError

        raise ConfigError(f"{target} exists and is not a folder; remove it or choose another --out")
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}{_STAGE}", dir=target.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
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
