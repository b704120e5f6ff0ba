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

__all__ = ["UploadRejected", "UploadLimits", "sniff_image_type", "decode_upload", "ALLOWED_TYPES",
           "peek_size", "check_resize", "PixelBudget"]

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


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def peek_size(data: bytes, limits: UploadLimits) -> tuple[int, int]:
    """``(width, height)`` from the image's header, nothing decoded; refuses what
    :func:`decode_upload` would refuse for its type or size before any pixel is decoded."""
    import io

    from PIL import Image

    _check_bytes(data, limits)
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise UploadRejected(413, f"image: more than {limits.max_pixels:,} pixels") from None
    except Exception as exc:  # noqa: BLE001 - any header Pillow cannot read
        raise UploadRejected(400, f"image: cannot be read ({type(exc).__name__}: {exc})") from None
    if w * h > limits.max_pixels:
        raise UploadRejected(413, f"image: {w}x{h} = {w * h:,} pixels exceeds the limit of "
                                  f"{limits.max_pixels:,} (--max-pixels)")
    return w, h


def check_resize(width: int, height: int, preprocess: object, max_pixels: int) -> int:
    """Pixels of the image after the model's resize (``--fit crop`` scales the short side, so a
    1 x 60000 strip would become 256 x 15,360,000); refused (413) beyond ``max_pixels``. Returns
    the most pixels the image occupies while it is prepared (before or after the resize)."""
    rw, rh = preprocess.resize_size(width, height)  # type: ignore[attr-defined]
    if rw * rh > max_pixels:
        raise UploadRejected(413, f"image: {width}x{height} would be resized to {rw}x{rh} "
                                  f"({rw * rh:,} pixels, more than {max_pixels:,}) for the model's "
                                  f"input; its aspect ratio is too extreme for --fit crop")
    return max(width * height, rw * rh)


def _check_bytes(data: bytes, limits: UploadLimits) -> None:
    if not data:
        raise UploadRejected(400, "image: the upload is empty")
    if len(data) > limits.max_bytes:
        raise UploadRejected(413, f"image: {_mb(len(data))} exceeds the limit of "
                                  f"{_mb(limits.max_bytes)}")
    if sniff_image_type(data[:16]) is None:
        raise UploadRejected(415, "image: not an image (expected JPEG, PNG, GIF, BMP, WebP or TIFF "
                                  "content)")


class PixelBudget:
    """At most ``cap`` decoded pixels held at once by the requests in flight (asyncio): a request
    waits for its share before decoding, and gives it back when its answer is built. Bounds the
    server's memory whatever the number of concurrent worst-case uploads."""

    def __init__(self, cap: int) -> None:
        import asyncio

        self.cap = int(cap)
        self.used = 0
        self.peak = 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int) -> int:
        n = max(1, min(int(n), self.cap))
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + n <= self.cap)
            self.used += n
            self.peak = max(self.peak, self.used)
        return n

    async def release(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


def decode_upload(data: bytes, limits: UploadLimits, tmp_dir: str | None = None) -> Image.Image:
    """Check and decode one upload into an upright 8-bit RGB image.

    Raises:
        UploadRejected: 400 empty or undecodable, 413 too many bytes or pixels, 415 not an image.
    """
    from camloc.data.images import load_image
    from camloc.errors import ImageError

    _check_bytes(data, limits)
    kind = sniff_image_type(data[:16])
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
