"""Uploaded images: size limit, content sniffing, decoding with camloc's own image loader.

The type of an upload is decided by its first bytes, never by its name or its declared content
type. Decoding goes through :func:`camloc.data.images.load_image` (EXIF rotation, every colour
mode, truncated files and decompression bombs refused with a reason), on a private temporary file
that is removed right after.

>>> sniff_image_type(b"\\x89PNG\\r\\n\\x1a\\n....")
'png'
>>> sniff_image_type(b"<html>") is None
True
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["UploadRejected", "UploadLimits", "sniff_image_type", "decode_upload", "ALLOWED_TYPES"]

ALLOWED_TYPES = ("jpeg", "png", "gif", "bmp", "webp", "tiff")


class UploadRejected(Exception):
    """An upload the server refuses; ``status`` is the HTTP code, the message the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class UploadLimits:
    """``max_bytes`` per request body, ``max_pixels`` per decoded image."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000


def sniff_image_type(head: bytes) -> str | None:
    """The image type named by the first bytes of a file, or ``None`` for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 14:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def decode_upload(data: bytes, limits: UploadLimits, tmp_dir: str | None = None) -> Image.Image:
    """Check and decode one upload into an upright 8-bit RGB image.

    Raises:
        UploadRejected: 400 empty or undecodable, 413 too many bytes or pixels, 415 not an image.
    """
    from camloc.data.images import load_image
    from camloc.errors import ImageError

    if not data:
        raise UploadRejected(400, "image: the upload is empty")
    if len(data) > limits.max_bytes:
        raise UploadRejected(413, f"image: {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    kind = sniff_image_type(data[:16])
    if kind is None:
        raise UploadRejected(415, "image: not an image (expected JPEG, PNG, GIF, BMP, WebP or TIFF "
                                  "content)")
    fd, path = tempfile.mkstemp(prefix="upload-", suffix=f".{kind}", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return load_image(path, max_pixels=limits.max_pixels)
    except ImageError as exc:
        status = 413 if ("exceeds the limit" in exc.reason or "bomb" in exc.reason) else 400
        raise UploadRejected(status, f"image: {exc.reason}") from None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
