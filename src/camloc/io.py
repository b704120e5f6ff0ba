"""Small I/O helpers: atomic writes, JSON lines, run manifests.

Every file camloc writes goes through a temporary file in the same folder followed by
``os.replace``, so an interrupted run never leaves a half-written output behind.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_text(d / "a.txt", "hello")
>>> (d / "a.txt").read_text()
'hello'
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_save_npy",
    "clean_text",
    "JsonlWriter",
    "TEMP_MARK",
    "LOCK_NAME",
    "NAME_MAX",
    "dumps",
    "folder_lock",
    "is_temp_file",
    "make_out_dir",
    "out_lock",
    "json_default",
    "refuse_symlink",
    "repair_jsonl",
    "read_jsonl",
    "remove_stale_temps",
    "versions",
]


#: Longest file name most filesystems accept (ext4, XFS, btrfs, APFS, NTFS: 255 bytes or units).
NAME_MAX = 255
#: What every temporary file camloc writes carries in its name (``.NAME.camloc-XXXXXXXX.tmp``):
#: only files with this mark are ever cleaned up, so a user's own ``.*.tmp`` files are kept.
TEMP_MARK = ".camloc-"
_TMP_SUFFIX = ".tmp"
_TMP_RANDOM = 8  # characters tempfile.mkstemp adds


def _tmp_prefix(name: str) -> str:
    """``.NAME.camloc-`` for the temporary file beside ``NAME``, shortened (with a hash, so two
    long names do not share a prefix) when ``.NAME.camloc-XXXXXXXX.tmp`` would exceed
    :data:`NAME_MAX`."""
    prefix = f".{name}{TEMP_MARK}"
    room = NAME_MAX - _TMP_RANDOM - len(_TMP_SUFFIX)
    if len(prefix.encode("utf-8", "surrogateescape")) <= room:
        return prefix
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    head = _truncate_bytes(name, room - len(digest) - 3 - len(TEMP_MARK))
    return f".{head}~{digest}{TEMP_MARK}"


def _truncate_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    return raw[:max(0, limit)].decode("utf-8", "ignore")


def is_temp_file(name: str) -> bool:
    """Whether ``name`` is one of :func:`atomic_open`'s temporary files (a user's own
    ``.notes.tmp`` is not: camloc's carry :data:`TEMP_MARK`).

    >>> is_temp_file(".report.json.camloc-k2j3h4g5.tmp"), is_temp_file(".notes.tmp")
    (True, False)
    """
    if not (name.startswith(".") and name.endswith(_TMP_SUFFIX)):
        return False
    i = name.rfind(TEMP_MARK)
    return i > 0 and len(name) - i - len(TEMP_MARK) - len(_TMP_SUFFIX) == _TMP_RANDOM


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.

    The rename replaces ``path`` itself: if ``path`` is a symbolic link, the link is replaced and
    its target is never written; under an output folder held by :func:`folder_lock`, no folder
    between it and ``path`` may be a link either (see :func:`make_out_dir`). Any legal file name
    works (the temporary name is shortened when ``path``'s name is close to the 255-byte limit).
    A write that fails for lack of room (a full disk, a quota, a file-size limit) raises an
    :class:`OSError` with its errno and ``path`` (NumPy's short writes carry neither); nothing is
    left behind."""
    path = Path(path)
    _parent_dir(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh  # type: ignore[misc]
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and _no_room(exc):
            raise _no_room_error(path, exc) from None
        raise


_NO_ROOM = {getattr(errno, n) for n in ("ENOSPC", "EFBIG", "EDQUOT") if hasattr(errno, n)}


def _no_room(exc: OSError) -> bool:
    """Whether ``exc`` is a write that found no room: a full disk, a quota or a file-size limit
    (NumPy's short-write error carries no errno: "N requested and M written")."""
    return exc.errno in _NO_ROOM or (exc.errno is None and "requested and" in str(exc))


def _no_room_error(path: Path, exc: OSError) -> OSError:
    code = exc.errno if exc.errno in _NO_ROOM else errno.ENOSPC
    why = (os.strerror(code) if exc.errno else "short write: the disk is full or a file-size "
           "limit is set")
    return OSError(code, f"{why}; nothing was written there: free some space (or choose "
                   f"another output folder) and run again", str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (lone surrogates, see :func:`clean_text`,
    become U+FFFD: a file name that is not UTF-8 never makes a report unwritable)."""
    atomic_write_bytes(path, clean_text(text).encode("utf-8"))


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so that it encodes as UTF-8.

    Python reads a file name that is not valid UTF-8 with ``surrogateescape`` (each bad byte
    becomes a lone surrogate); such text cannot be written as UTF-8, so every writer of names
    into a text file (JSON, XML, CSV, plot labels) passes them through here.

    >>> clean_text(b"caf\\xe9.jpg".decode("utf-8", "surrogateescape")) == "caf\\ufffd.jpg"
    True
    """
    return _SURROGATE_RE.sub("\ufffd", text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (NumPy scalars and arrays are converted;
    NaN and infinities become ``null``: strict JSON has no such numbers)."""
    atomic_write_text(path, dumps(obj, indent=indent) + "\n")


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text for ``obj``: NumPy values converted, non-finite floats written as ``null``
    (``json.dumps`` would write bare ``NaN``, which strict parsers reject).

    >>> dumps({"p": [0.5, float("nan")], "q": float("inf")})
    '{"p": [0.5, null], "q": null}'
    """
    try:
        return json.dumps(obj, indent=indent, default=json_default, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), indent=indent, default=json_default, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        return _finite(obj.tolist())
    return obj


def atomic_save_npy(path: str | os.PathLike[str], array: Any) -> None:
    """Save a NumPy array as ``.npy`` atomically."""
    import numpy as np

    with atomic_open(path, "wb") as fh:
        np.save(fh, np.asarray(array))


def json_default(obj: Any) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None  # type: ignore[assignment]
    if np is not None:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


class JsonlWriter:
    """Write JSON lines, one complete line per ``write`` (flushed each time).

    A record is serialised fully before anything is written (strict JSON, see :func:`dumps`) and
    written with a single ``write`` call. ``append=True`` adds to an existing file after
    :func:`repair_jsonl` has cut a torn last line (a crash mid-write), so the next record never
    gets glued to it; ``append=False`` writes a temporary file that replaces ``path`` on
    ``close`` (an interrupted writer leaves the old file). Neither follows a symbolic link at
    ``path``: appending to one raises :class:`~camloc.errors.ConfigError`, replacing one replaces
    the link.
    """

    def __init__(self, path: str | os.PathLike[str], append: bool = True) -> None:
        self.path = Path(path)
        _parent_dir(self.path)
        self._tmp: str | None = None
        if append:
            refuse_symlink(self.path)
            repair_jsonl(self.path)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(self.path, flags, 0o666)
        else:
            fd, self._tmp = tempfile.mkstemp(prefix=_tmp_prefix(self.path.name),
                                             suffix=_TMP_SUFFIX, dir=self.path.parent)
        self._fh = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        line = dumps(record) + "\n"
        self._fh.write(line)
        self._fh.flush()

    def close(self, commit: bool = True) -> None:
        """Close the file; with ``append=False``, ``commit`` puts it in place (else discards it)."""
        if self._fh.closed:
            return
        self._fh.close()
        if self._tmp is not None:
            if commit:
                os.chmod(self._tmp, 0o666 & ~_umask())
                os.replace(self._tmp, self.path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(commit=exc_type is None)


def refuse_symlink(path: str | os.PathLike[str]) -> None:
    """Raise :class:`~camloc.errors.ConfigError` if ``path`` is a symbolic link (camloc never
    writes through one: its target may lie outside the output folder)."""
    p = Path(path)
    if p.is_symlink():
        from camloc.errors import ConfigError

        raise ConfigError(f"{p} is a symbolic link (to {os.readlink(p)}); camloc does not write "
                          f"through links: remove it or choose another output folder")


def repair_jsonl(path: str | os.PathLike[str]) -> int:
    """Cut a torn (unterminated) last line off a JSON-lines file; return the bytes removed.

    Every complete line is kept. A missing file is left alone.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> _ = p.write_text('{"a": 1}\\n{"a": 2')
    >>> repair_jsonl(p), p.read_text()
    (7, '{"a": 1}\\n')
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return 0
    with os.fdopen(fd, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        # scan back for the last newline, a block at a time
        end, block = size, 65536
        keep = 0
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            chunk = fh.read(end - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            end = start
        fh.truncate(keep)
        return size - keep


LOCK_NAME = ".camloc.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], option: str = "--out") -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``folder`` (the file ``folder/.camloc.lock``) while the
    block runs; a second holder is refused at once with :class:`~camloc.errors.ConfigError`
    naming the process that holds it (``option`` names the argument in that message).

    The lock is ``fcntl.flock`` (released by the kernel if the holder dies, even by ``kill -9``),
    so a stale lock file never blocks a later run. Where ``fcntl`` is missing (Windows) or the
    filesystem does not support locks, the block runs unlocked.
    """

    path = Path(folder) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_symlink(path)
    root = os.path.abspath(folder)
    _ROOTS.append(root)
    try:
        with _flock(path, folder, option):
            yield path
    finally:
        _ROOTS.remove(root)


@contextlib.contextmanager
def _flock(path: Path, folder: str | os.PathLike[str], option: str) -> Iterator[None]:
    from camloc.errors import ConfigError

    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise ConfigError(f"{option} {folder} is in use by another camloc run ({holder}); "
                              f"wait for it to finish, or choose another {option}") from None
        except OSError:  # e.g. a filesystem without locks: run unlocked
            pass
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def out_lock(folder: str | os.PathLike[str], option: str = "--out") -> Iterator[None]:
    """:func:`folder_lock` on ``folder`` in the main process of a run (``RANK`` unset or 0);
    under ``torchrun`` the other ranks run unlocked (rank 0 holds the lock for the run).
    Every verb that writes an ``--out`` holds this while it writes."""
    if int(os.environ.get("RANK", "0") or 0) != 0:
        yield
        return
    with folder_lock(folder, option):
        yield


#: Output folders held by :func:`folder_lock` in this process (absolute, not resolved): every
#: folder camloc creates below one of them is created by :func:`make_out_dir`'s rule.
_ROOTS: list[str] = []


def make_out_dir(out: str | os.PathLike[str], *parts: str) -> Path:
    """``out/PART/...``, each folder below ``out`` created if missing, never through a link.

    The rule for every file and folder a verb creates under its ``--out``: a folder there that is
    a symbolic link (its target may lie outside ``out``) or not a folder is refused with
    :class:`~camloc.errors.ConfigError`, nothing is created through it. ``out`` itself is the
    user's to name and may be a link.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> make_out_dir(d, "a", "b") == d / "a" / "b", (d / "a" / "b").is_dir()
    (True, True)
    >>> (d / "ln").symlink_to(d / "a")
    >>> make_out_dir(d, "ln")
    Traceback (most recent call last):
    ...
    camloc.errors.ConfigError: ... is a symbolic link (to ...); camloc does not write through ...
    """
    from camloc.errors import ConfigError

    here = Path(out)
    here.mkdir(parents=True, exist_ok=True)
    for part in (q for p in parts for q in Path(p).parts):
        if part in ("", ".", "..") or os.sep in part:
            raise ConfigError(f"{here / part}: not a plain folder name")
        here = here / part
        with contextlib.suppress(FileExistsError):
            os.mkdir(here)
        refuse_symlink(here)
        if not here.is_dir():
            raise ConfigError(f"{here} is not a folder; camloc needs to write a folder there: "
                              f"move it away or choose another output folder")
    return here


def _parent_dir(path: Path) -> None:
    """Create ``path``'s folder: by :func:`make_out_dir` when it lies under an output folder
    this process holds (no link followed below it), else plainly."""
    parent = os.path.abspath(path.parent)
    for root in reversed(_ROOTS):
        if parent == root or parent.startswith(root.rstrip(os.sep) + os.sep):
            make_out_dir(root, *Path(os.path.relpath(parent, root)).parts
                         if parent != root else ())
            return
    path.parent.mkdir(parents=True, exist_ok=True)


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete :func:`atomic_open`'s temporary files left in ``folder`` (not recursive) by a run
    that was killed; call it only while holding :func:`folder_lock`. Returns what was removed."""
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            if is_temp_file(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a torn (unterminated, unparsable) last line is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that determine camloc's numbers."""
    out = {"python": platform.python_version()}
    for name in ("camloc", "torch", "torchvision", "timm", "numpy", "cv2", "PIL"):
        try:
            mod = __import__(name)
            out[name] = str(getattr(mod, "__version__", "unknown"))
        except ImportError:
            continue
    return out
