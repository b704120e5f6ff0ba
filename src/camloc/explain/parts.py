"""Where an explain run's records live while it runs, and the one ``results.jsonl`` they end in.

A single process appends its records to ``OUT/results.jsonl``; under ``torchrun`` rank ``r``
appends to ``OUT/parts/results.rank<r>.jsonl`` (one writer per file, each line complete and
flushed), and rank 0 merges when every rank is done. Merging reads every record file (the old
``results.jsonl`` first, then the parts in name order; for an image with several records the last
one read wins), and writes ``results.jsonl`` atomically in the *canonical order*:

1. records of images this run did not look at, in the order the files hold them (earlier runs
   into the same folder over other inputs);
2. the records of this run's inputs, in input order.

So a run's ``results.jsonl`` does not depend on how many processes made it, and a killed run's
parts are read back by the next run (any number of ranks), which skips what they hold.

Memory: the merge keeps one offset per record (an ``int``: file number and byte offset) in a dict
keyed by the 64-bit hash of the image key, and the input order as an array of those hashes
(8 bytes per image); lines are read back one at a time.
"""

from __future__ import annotations

import contextlib
import json
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from camloc.explain.inputs import key_hash, key_of
from camloc.io import atomic_open, refuse_symlink, remove_stale_temps

__all__ = ["PARTS", "RecordIndex", "part_path", "record_files", "merge_results", "remove_parts"]

PARTS = "parts"
_SHIFT = 44  # offset bits: files up to 16 TB; file numbers above


def part_path(out: Path, rank: int) -> Path:
    """Rank ``rank``'s record file."""
    return out / PARTS / f"results.rank{rank}.jsonl"


def record_files(out: Path) -> list[Path]:
    """``results.jsonl`` (if present) and every rank part present, in merge order."""
    files = []
    if (out / "results.jsonl").is_file():
        files.append(out / "results.jsonl")
    parts = out / PARTS
    if parts.is_dir():
        refuse_symlink(parts)
        files.extend(sorted(p for p in parts.glob("results.rank*.jsonl") if p.is_file()))
    return files


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` of every complete line (a torn last line is ignored)."""
    with open(path, "rb") as fh:
        offset = 0
        for line in fh:
            if not line.endswith(b"\n"):
                break
            yield offset, line
            offset += len(line)


def _record_key(line: bytes) -> str | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
        return None
    return key_of(rec["path"])


class RecordIndex:
    """The latest record of each image over ``files``: ``hash(key) -> (file, offset)``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> _ = p.write_text('{"path": "/a.jpg", "v": 1}\\n{"path": "/a.jpg", "v": 2}\\n')
    >>> idx = RecordIndex([p]); len(idx), idx.line(key_hash("/a.jpg"))
    (1, b'{"path": "/a.jpg", "v": 2}\\n')
    """

    def __init__(self, files: list[Path]) -> None:
        self.files = list(files)
        self.where: dict[int, int] = {}
        self.duplicates = False
        for n, path in enumerate(self.files):
            for offset, line in _lines(path):
                key = _record_key(line)
                if key is None:
                    continue
                h = key_hash(key)
                self.duplicates = self.duplicates or h in self.where
                self.where[h] = (n << _SHIFT) | offset
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.where)

    def __contains__(self, h: int) -> bool:
        return h in self.where

    def line(self, h: int) -> bytes:
        """The record line of the image with hash ``h``."""
        packed = self.where[h]
        n, offset = packed >> _SHIFT, packed & ((1 << _SHIFT) - 1)
        fh = self._handles.get(n)
        if fh is None:
            fh = self._handles[n] = open(self.files[n], "rb")
        fh.seek(offset)
        return fh.readline()

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()

    def leftovers(self, seen: set[int]) -> Iterator[bytes]:
        """Records of images not in ``seen``, in file order (each image once: its latest)."""
        for n, path in enumerate(self.files):
            for offset, line in _lines(path):
                key = _record_key(line)
                if key is None:
                    continue
                h = key_hash(key)
                if h not in seen and self.where.get(h) == (n << _SHIFT) | offset:
                    yield line


def merge_results(out: Path, order: array, seen: set[int]) -> int:
    """Write ``out/results.jsonl`` in canonical order from every record file in ``out`` (see the
    module docstring); ``order`` holds this run's input hashes in input order, ``seen`` the same
    as a set. Returns the number of records written. The parts are left for
    :func:`remove_parts` (call it once the merged file is in place)."""
    index = RecordIndex(record_files(out))
    count = 0
    try:
        # lines are copied verbatim: every record keeps its exact bytes
        with atomic_open(out / "results.jsonl", "wb") as fh:
            for line in index.leftovers(seen):
                fh.write(line)
                count += 1
            for h in order:  # the input order holds each image once
                if h in index:
                    fh.write(index.line(h))
                    count += 1
    finally:
        index.close()
    return count


def remove_parts(out: Path) -> None:
    """Delete the rank parts (after a merge) and the parts folder if it is then empty."""
    parts = out / PARTS
    if not parts.is_dir() or parts.is_symlink():
        return
    for p in parts.glob("results.rank*.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    remove_stale_temps(parts)
    with contextlib.suppress(OSError):
        parts.rmdir()
