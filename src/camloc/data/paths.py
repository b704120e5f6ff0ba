"""Image ids as paths: which ids are safe to read, which output path an id gets, and walking
folders without skipping unreadable ones silently.

Image ids come from metadata (``image_ids.txt``, CSV/JSON ``path``, CUB's ``images.txt``,
Kaggle's ``ImageId``) and are joined to the dataset's image folder. :func:`id_problem` refuses
the ones that would leave that folder (an absolute path, a ``..`` component) and ones no file
system can hold (control characters); every reader reports them with their file and line.
Symbolic links inside the dataset are followed when reading, wherever they point: the user put
them there, and output paths never depend on where a link points.

:func:`safe_relpath` turns an id into the relative path of an output file (``--save-maps``
writes ``scoremaps/<safe_relpath(id, ".npy")>``): ordinary ids keep their layout exactly
(``val/x.JPEG`` -> ``val/x.JPEG.npy``, as wsolevaluation's score maps), anything else is made
safe and marked with a hash of the id, so different ids never share an output path.

>>> safe_relpath("val/ILSVRC2012_val_00000001.JPEG", ".npy")
'val/ILSVRC2012_val_00000001.JPEG.npy'
>>> safe_relpath("../../etc/passwd", ".npy")
'_/_/etc/passwd~936d7c04cd.npy'
>>> id_problem("../x.jpg")
"'..' in the path leaves the dataset folder; image paths must stay inside it"
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["id_problem", "safe_relpath", "walk_files", "MAX_NAME_BYTES"]

_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# characters some file systems refuse (Windows, SMB shares) or that separate paths
_UNSAFE_CHARS_RE = re.compile(r'[\x00-\x1f\x7f\\:*?"<>|]')
_HASH_TAIL_RE = re.compile(r"~[0-9a-f]{10}$")

#: Longest output path component, in UTF-8 bytes, suffix included. File systems allow 255;
#: the rest is left for the temporary names atomic writers add (``.name.tmp-XXXXXXXX``).
MAX_NAME_BYTES = 180
_MAX_TOTAL_BYTES = 1024


def id_problem(image_id: str) -> str | None:
    """Why ``image_id`` cannot be read as a path inside the dataset folder, or ``None``.

    Refused: an empty id, control characters (NUL, newline, ...), an absolute path (``/x``,
    ``\\\\x``, ``C:x``) and any ``..`` component (``/`` and ``\\\\`` both count as separators).
    """
    if not image_id:
        return "empty image path"
    if _CONTROL_RE.search(image_id):
        return "control character in the image path"
    if image_id.startswith(("/", "\\")) or _DRIVE_RE.match(image_id):
        return ("absolute image path; image paths must be relative to the dataset folder "
                "(pass image_root= for images kept elsewhere)")
    if ".." in re.split(r"[/\\]", image_id):
        return "'..' in the path leaves the dataset folder; image paths must stay inside it"
    return None


def _clip_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def safe_relpath(image_id: str, suffix: str = "") -> str:
    """A relative POSIX path for an output file of ``image_id``: its own layout when that is
    safe, else a safe one ending in ``~<10 hex digits of the id's SHA-1>``.

    Guarantees, for any string: no absolute path, no ``.``/``..``/empty component, no control
    or Windows-reserved characters (``\\\\ : * ? " < > |``), every component at most
    :data:`MAX_NAME_BYTES` UTF-8 bytes (suffix included), the whole path at most 1024 bytes,
    and two different ids never give the same path (the hash marks every changed id; an
    unchanged id never ends in such a mark). Case-insensitive file systems can still merge ids
    that differ only in case.

    >>> safe_relpath("a/b.jpg"), safe_relpath("a:b.jpg") != safe_relpath("a_b.jpg")
    ('a/b.jpg', True)
    """
    suffix = str(suffix)
    if _UNSAFE_CHARS_RE.search(suffix) or "/" in suffix or len(suffix.encode()) > 32:
        raise ValueError(f"suffix {suffix!r}: expected a short file ending such as '.npy'")
    raw_parts = re.split(r"/", image_id)
    parts = []
    changed = False
    for part in raw_parts:
        clean = _UNSAFE_CHARS_RE.sub("_", part)
        if clean in ("", ".", ".."):
            clean = "_"
        changed |= clean != part
        parts.append(clean)
    if _HASH_TAIL_RE.search(parts[-1]):
        changed = True  # an unchanged id never looks like a changed one
    tag = "~" + hashlib.sha1(image_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    for k, part in enumerate(parts):
        limit = budget if k == len(parts) - 1 else MAX_NAME_BYTES
        if len(part.encode("utf-8")) > limit:
            parts[k] = _clip_utf8(part, limit - len(tag))
            changed = True
    path = "/".join(parts)
    if len(path.encode("utf-8")) + len(suffix) > _MAX_TOTAL_BYTES:
        parts = [_clip_utf8(parts[-1], budget - len(tag))]
        changed = True
    if changed:
        parts[-1] = _clip_utf8(parts[-1], budget - len(tag)) + tag
    return "/".join(parts) + suffix


def walk_files(root: Path, on_error: Callable[[Path, OSError], None],
               skip_hidden: bool = True) -> Iterator[Path]:
    """Every file under ``root`` (sorted per folder; symbolic links to folders are not
    entered), calling ``on_error(folder, error)`` for each folder that cannot be listed
    instead of skipping it silently. Names starting with ``.`` are skipped when
    ``skip_hidden``."""

    def report(exc: OSError) -> None:
        on_error(Path(exc.filename) if exc.filename else root, exc)

    for folder, dirs, files in os.walk(root, onerror=report):
        if skip_hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        dirs.sort()
        base = Path(folder)
        for name in sorted(files):
            if skip_hidden and name.startswith("."):
                continue
            yield base / name
