"""Output file names of an image: flat, filesystem-safe, bounded, unique per image."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = ["output_name"]

_NAME_BYTES = 100  # readable part of an output name (the hash keeps names unique)


def output_name(path: str | os.PathLike[str]) -> str:
    """The flat output name (without extension) for the image at ``path``.

    The file's own name with anything but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``,
    cut to 100 bytes, then ``-`` and 16 hex digits of the SHA-256 of the resolved absolute path.
    It depends on the file alone (not on the other inputs of the run), so resuming with fewer or
    more inputs finds the same names; every name (with its extension and the temporary-file
    affixes of :func:`camloc.io.atomic_open`) stays far below the 255-byte limit.

    >>> output_name("/data/a/x.jpg") != output_name("/data/a__x.jpg")
    True
    >>> output_name("/data/a/x.jpg")[:6]
    'x.jpg-'
    """
    key = str(Path(path).expanduser().resolve())
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    readable = re.sub(r"[^\w.\-]+", "_", Path(key).name, flags=re.UNICODE).lstrip(".-") or "image"
    raw = readable.encode("utf-8", "surrogateescape")[:_NAME_BYTES]
    readable = raw.decode("utf-8", "ignore") or "image"
    return f"{readable}-{digest}"
