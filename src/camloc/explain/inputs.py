"""The inputs of an explain run, streamed: files, folders, globs, list files and datasets.

:class:`ExplainInputs` describes where the images come from; :meth:`ExplainInputs.stream` yields
one :class:`InputItem` per image (or per problem: an input that matched nothing, an unreadable
folder, a bad line of a list file) in the run's *input order*, each with its position
``index``. Nothing is listed ahead: a folder of a million photos is walked one folder at a time
and a list file read line by line, so memory does not grow with the number of images (apart from
one 64-bit hash per image, kept to drop duplicates: about 70 bytes each).

Input order:

* positional inputs first, in the order given: an image file as is; a folder walked recursively
  in sorted order (the order of ``sorted()`` over the paths: within a folder, files and
  sub-folders by name, a sub-folder's images where its name sorts; symbolic links to folders are
  not entered; file names starting with ``.`` are skipped); a glob's matches sorted;
* then each list file (``--list FILE``; ``-`` reads standard input), line by line. A line is one
  path; blank lines are skipped and the line ending (``\\n`` or ``\\r\\n``) is not part of the
  path (no other whitespace is stripped: file names may start or end with spaces). A relative
  path is relative to the folder holding the list file (standard input: the working
  directory), so a list travels with its images. Bad lines (no such file, a folder, control
  characters) are reported as ``LIST:LINE: reason`` and the rest is read;
* or a dataset's samples in its order (``--dataset``), with their image ids and labels.

An image reached twice (the same resolved absolute path) is explained once, at its first place.
Folders and globs keep files with known image extensions; files named explicitly (arguments,
list lines) are kept whatever their extension and fail later if they cannot be decoded.

The run's own outputs are never explained: a folder walk leaves out the output folder when it
meets it (``camloc explain photos --out photos/out``), and when the walked folder is the output
folder or inside it (``camloc explain . --out .``), the output folder's own subfolders
(:data:`OUTPUT_FOLDERS`: ``overlays/``, ``maps/``, ...); a glob leaves out those subfolders.
Files named explicitly, and a dataset's samples, are explained wherever they are (``camloc
explain photos/x.jpg --out photos``).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> for name in ("b.jpg", "a/z.png", "a.jpg"):
...     (d / name).parent.mkdir(exist_ok=True); _ = (d / name).write_bytes(b"")
>>> [i.path.name for i in ExplainInputs(paths=[d]).stream()]
['a.jpg', 'z.png', 'b.jpg']
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from camloc.errors import ConfigError

__all__ = ["ExplainInputs", "InputItem", "key_of", "key_hash", "OUTPUT_FOLDERS"]

#: The subfolders of an explain run's output folder that hold its own files.
OUTPUT_FOLDERS = ("overlays", "maps", "parts", "coco", "yolo", "voc")

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def key_of(path: str | os.PathLike[str]) -> str:
    """An image's identity across runs: its resolved absolute path."""
    return str(Path(path).expanduser().resolve())


def key_hash(key: str) -> int:
    """A 64-bit hash of an image key (what duplicate detection, resume and merging keep)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class InputItem:
    """One input of a run, at position ``index`` of the input order.

    An image has ``path`` and ``key`` (its resolved absolute path); a problem has ``path=None``,
    ``key`` the input as the user wrote it and ``problem`` the reason. ``image_id`` and ``label``
    come with dataset samples."""

    index: int
    key: str
    path: Path | None = None
    problem: str | None = None
    image_id: str | None = None
    label: int | None = None


@dataclass
class ExplainInputs:
    """Where an explain run's images come from (see the module docstring).

    ``paths``: files, folders and globs; ``lists``: list files (``"-"``: standard input);
    ``dataset``: a :class:`camloc.data.sample.Dataset` (exclusive with the other two).
    ``stdin`` replaces ``sys.stdin`` for ``"-"`` (tests)."""

    paths: Sequence[str | os.PathLike[str]] = ()
    lists: Sequence[str | os.PathLike[str]] = ()
    dataset: Any = None
    stdin: TextIO | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.paths = [str(p) for p in self.paths]
        self.lists = [str(p) for p in self.lists]
        if self.dataset is not None and (self.paths or self.lists):
            raise ConfigError("--dataset: give a dataset or image paths/--list, not both")
        if self.lists.count("-") > 1:
            raise ConfigError("--list -: standard input can be read once")

    @property
    def empty(self) -> bool:
        return not self.paths and not self.lists and self.dataset is None

    @property
    def has_labels(self) -> bool:
        return self.dataset is not None

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the inputs."""
        if self.dataset is not None:
            ds = self.dataset
            return {"dataset": str(getattr(ds, "root", "")), "format": getattr(ds, "format", None),
                    "split": getattr(ds, "split", None), "images": len(ds)}
        return {"paths": list(self.paths), "lists": list(self.lists)}

    def check(self) -> None:
        """Refuse list files that cannot be opened (before anything is written)."""
        for lst in self.lists:
            if lst == "-":
                continue
            p = Path(lst)
            if not p.is_file():
                raise ConfigError(f"--list {lst}: " + ("is a folder; give a text file with one "
                                                      "image path per line" if p.is_dir() else
                                                      "no such file"))
            if not os.access(p, os.R_OK):
                raise ConfigError(f"--list {lst}: the file is not readable")

    def stream(self, exclude: Path | None = None) -> Iterator[InputItem]:
        """Every input in input order, duplicates dropped; with ``exclude`` (the run's output
        folder, resolved), the run's own outputs that a folder walk or a glob finds left out
        (see the module docstring)."""
        seen: set[int] = set()
        index = 0
        for item in self._raw(exclude):
            if item.path is not None:
                h = key_hash(item.key)
                if h in seen:
                    continue
                seen.add(h)
            yield InputItem(index, item.key, item.path, item.problem, item.image_id, item.label)
            index += 1

    # ------------------------------------------------------------------ sources
    def _raw(self, exclude: Path | None) -> Iterator[InputItem]:
        def skipped_folders(raw: str) -> list[Path]:
            if exclude is None:
                return []
            p = Path(raw)
            if p.is_dir() and not _is_within(p.expanduser().resolve(), exclude):
                return [exclude]  # the walk meets the output folder: all of it is the run's
            return [exclude / name for name in OUTPUT_FOLDERS]

        if self.dataset is not None:
            for s in self.dataset:
                yield InputItem(0, key_of(s.path), Path(s.path), image_id=s.image_id,
                                label=s.label)
            return
        for raw in self.paths:
            own = skipped_folders(raw)
            for p, problem, found in _expand(raw):
                if problem is not None:
                    yield InputItem(0, p, problem=problem)
                    continue
                key = key_of(p)
                if found and any(_is_within(Path(key), folder) for folder in own):
                    continue  # never explain the run's own outputs
                yield InputItem(0, key, Path(p))
        for lst in self.lists:
            for p, problem in self._lines(lst):
                if problem is not None:
                    yield InputItem(0, p, problem=problem)
                    continue
                yield InputItem(0, key_of(p), Path(p))

    def _lines(self, lst: str) -> Iterator[tuple[str, str | None]]:
        if lst == "-":
            fh = self.stdin if self.stdin is not None else sys.stdin
            base, label = Path.cwd(), "<stdin>"
            yield from _list_lines(fh, base, label)
            return
        p = Path(lst)
        try:
            fh = open(p, encoding="utf-8", errors="surrogateescape", newline="")
        except OSError as exc:
            raise ConfigError(f"--list {lst}: cannot read it ({exc.strerror or exc})") from exc
        with fh:
            yield from _list_lines(fh, p.resolve().parent, lst)


def _list_lines(fh: TextIO, base: Path, label: str) -> Iterator[tuple[str, str | None]]:
    for n, line in enumerate(fh, 1):
        text = line[:-1] if line.endswith("\n") else line
        text = text[:-1] if text.endswith("\r") else text
        if not text.strip():
            continue
        where = f"{label}:{n}"
        if _CONTROL_RE.search(text):
            yield text, f"{where}: control character in the path"
            continue
        p = Path(text).expanduser()
        if not p.is_absolute():
            p = base / p
        if p.is_dir():
            yield str(p), f"{where}: is a folder; a list names image files, one per line"
        elif not p.exists():
            yield str(p), f"{where}: no such file"
        else:
            yield str(p), None


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _expand(raw: str) -> Iterator[tuple[str, str | None, bool]]:
    """Files of one positional input, in order: ``(path, None, found)`` (``found``: by a folder
    walk or a glob, not named) or ``(input, problem, False)``."""
    import glob

    from camloc.data.images import IMAGE_EXTENSIONS

    p = Path(raw)
    if p.is_file():
        yield raw, None, False
    elif p.is_dir():
        found = False
        problems = False
        for q, problem in _walk_sorted(p):
            if problem is not None:
                problems = True
                yield q, problem, False
            elif Path(q).suffix.lower() in IMAGE_EXTENSIONS:
                found = True
                yield q, None, True
        if not found and not problems:
            yield raw, "folder contains no images", False
    elif any(ch in raw for ch in "*?["):
        matches = sorted(Path(m) for m in glob.glob(raw, recursive=True))
        matches = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS]
        if not matches:
            yield raw, "pattern matched no images", False
        for m in matches:
            yield str(m), None, True
    else:
        yield raw, "no such file or folder", False


def _walk_sorted(root: Path) -> Iterator[tuple[str, str | None]]:
    """Files under ``root`` in the order ``sorted()`` gives their paths (depth first, names
    sorted within each folder, files and folders together); one folder is listed at a time.
    Unreadable folders come out as ``(folder, "cannot read folder: reason")``."""
    stack: list[Iterator[os.DirEntry[str]]] = []

    def listing(folder: str) -> Iterator[os.DirEntry[str]] | str:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            return f"cannot read folder: {exc.strerror or exc}"
        return iter(entries)

    first = listing(str(root))
    if isinstance(first, str):
        yield str(root), first
        return
    stack.append(first)
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                sub = listing(entry.path)
                if isinstance(sub, str):
                    yield entry.path, sub
                else:
                    stack.append(sub)
                continue
            if entry.name.startswith(".") or not entry.is_file():
                continue  # hidden files, links to folders, sockets, dangling links
        except OSError:
            continue
        yield entry.path, None
