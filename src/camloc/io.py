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
import hashlib
import json
import math
import os
import platform
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
    "JsonlWriter",
    "LOCK_NAME",
    "NAME_MAX",
    "dumps",
    "folder_lock",
    "is_temp_file",
    "json_default",
    "refuse_symlink",
    "repair_jsonl",
    "read_jsonl",
    "remove_stale_temps",
    "versions",
]


#: Longest file name most filesystems accept (ext4, XFS, btrfs, APFS, NTFS: 255 bytes or units).
NAME_MAX = 255
_TMP_SUFFIX = ".tmp"
_TMP_RANDOM = 8  # characters tempfile.mkstemp adds


def _tmp_prefix(name: str) -> str:
    """``.NAME.`` for the temporary file beside ``NAME``, shortened (with a hash, so two long
    names do not share a prefix) when ``.NAME.XXXXXXXX.tmp`` would exceed :data:`NAME_MAX`."""
    prefix = f".{name}."
    room = NAME_MAX - _TMP_RANDOM - len(_TMP_SUFFIX)
    if len(prefix.encode("utf-8", "surrogateescape")) <= room:
        return prefix
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    head = _truncate_bytes(name, room - len(digest) - 4)
    return f".{head}~{digest}."


def _truncate_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    return raw[:max(0, limit)].decode("utf-8", "ignore")


def is_temp_file(name: str) -> bool:
    """Whether ``name`` looks like one of :func:`atomic_open`'s temporary files."""
    return name.startswith(".") and name.endswith(_TMP_SUFFIX)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.

    The rename replaces ``path`` itself: if ``path`` is a symbolic link, the link is replaced and
    its target is never written. Any legal file name works (the temporary name is shortened
    when ``path``'s name is close to the 255-byte limit)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh  # type: ignore[misc]
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
    from camloc.errors import ConfigError

    path = Path(folder) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_symlink(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
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
        yield path
    finally:
        os.close(fd)  # closing releases the lock


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
