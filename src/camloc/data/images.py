"""Reading images robustly and turning them into network input.

:func:`load_image` returns an 8-bit RGB ``PIL.Image`` for anything Pillow can decode: grayscale,
RGBA and palette images (transparency composited over white), CMYK, 16-bit and float images
(rescaled, not clipped), and EXIF-rotated photos (rotated upright, so boxes match what a viewer
shows). Everything else raises :class:`~camloc.errors.ImageError` naming the file and the reason:
missing, empty, not an image, truncated, or larger than ``max_pixels`` (decompression bombs).

Large photos are decoded reduced when the caller says how small the image may be
(``min_size=``, or :func:`load_image_for` with the model's preprocessing): JPEG's DCT scaling
(``Image.draft``) and an integer ``Image.reduce`` bring an 8,000 x 8,000 photo down to about three
times the model's input before anything else happens. The original (upright) size stays
available through :func:`original_size`, and :func:`to_tensor` computes the geometry from it, so
maps and boxes still map to original pixels. Images no larger than three times the input (the
ImageNet dev set's 227 x 227 photos, for instance) are never reduced.

>>> from PIL import Image
>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "g.png"); Image.new("L", (3, 2), 128).save(p)
>>> load_image(p).mode, load_image(p).size
('RGB', (3, 2))
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from camloc.errors import ConfigError, ImageError

if TYPE_CHECKING:  # torch and the model spec are imported where they are needed
    import torch

    from camloc.preprocess import Geometry, Preprocess

__all__ = ["load_image", "load_image_for", "read_image_size", "original_size", "to_tensor",
           "batch_images", "find_images", "check_resized_size", "IMAGE_EXTENSIONS",
           "DEFAULT_MAX_PIXELS", "MAX_RESIZED_PIXELS", "REDUCING_GAP"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm", ".jfif"})
#: The default ``max_pixels``: about 10,000 x 10,000. This limit, not Pillow's own
#: ``Image.MAX_IMAGE_PIXELS`` (89M), is the one camloc's readers apply.
DEFAULT_MAX_PIXELS = 100_000_000
#: The most pixels an image may have once resized for the network (before any crop): 4,096 x
#: 4,096. ``fit="crop"`` scales the short side to the input, so a very long, thin image (1 x
#: 60,000) would become 256 x 15,360,000 pixels (12 GB); such images are refused (an
#: :class:`~camloc.errors.ImageError`, so a batch goes on) before any pixel is decoded.
MAX_RESIZED_PIXELS = 4096 * 4096
#: A reduced decode keeps at least this many times the size the caller needs on each axis, so
#: the final resize still has enough pixels to filter from (Pillow's ``reducing_gap``).
REDUCING_GAP = 3

_PIL_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST}
_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)
# keys camloc keeps in ``Image.info`` of a decoded image
_INFO_ORIGINAL, _INFO_BOX, _INFO_DECODED = "original_size", "camloc_box", "camloc_decoded_size"
_INFO_PATH = "camloc_path"


# --------------------------------------------------------------------------------------------------
# Pillow's pixel limit
# --------------------------------------------------------------------------------------------------

_limit_lock = threading.Lock()
_limit_users = 0
_limit_saved: int | None = None


@contextmanager
def _camloc_pixel_limit() -> Iterator[None]:
    """While camloc reads an image, its own ``max_pixels`` applies instead of Pillow's global
    ``Image.MAX_IMAGE_PIXELS`` (89M, an error from 179M): Pillow's check is off while any
    camloc read runs (counted across threads) and restored when the last one ends. camloc
    checks the header size itself before any pixel is decoded."""
    global _limit_users, _limit_saved
    with _limit_lock:
        if _limit_users == 0:
            _limit_saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                Image.MAX_IMAGE_PIXELS = _limit_saved


def _check_max_pixels(max_pixels: Any) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) \
            or max_pixels < 1:
        raise ConfigError(f"max_pixels={max_pixels!r}: expected a positive whole number of pixels")
    return int(max_pixels)


# --------------------------------------------------------------------------------------------------
# Header: size and orientation
# --------------------------------------------------------------------------------------------------


def _check_file(p: Path) -> None:
    if not p.exists():
        raise ImageError(p, "file does not exist")
    if p.is_dir():
        raise ImageError(p, "is a directory, not an image")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ImageError(p, f"cannot stat: {exc.strerror or exc}") from exc
    if size == 0:
        raise ImageError(p, "empty file (0 bytes)")


def _png_trailing_orientation(fh: Any) -> int | None:
    """The orientation of an ``eXIf`` chunk after the image data of a PNG, found by stepping
    over chunk headers (no pixel is decoded)."""
    fh.seek(8)
    seen_data = False
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return None
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            return None
        if kind == b"IDAT":
            seen_data = True
        elif kind == b"eXIf" and seen_data:
            exif = Image.Exif()
            exif.load(fh.read(min(length, 1 << 24)))
            return exif.get(_ORIENTATION)
        fh.seek(length + 4, 1)  # the data and its CRC


def _header_orientation(im: Image.Image, fh: Any) -> int:
    """EXIF orientation (1..8) read from the header only. PNG: metadata before the image data
    as Pillow reads it, else an ``eXIf`` chunk after it."""
    try:
        value = Image.Image.getexif(im).get(_ORIENTATION)  # the base class never decodes
        if value is None and im.format == "PNG":
            value = _png_trailing_orientation(fh)
    except _DECODE_ERRORS:  # broken metadata
        return 1
    return _orientation_value(value)


def _orientation_value(value: Any) -> int:
    """The orientation ``exif_transpose`` acts on (1 = none) for a raw tag value."""
    return int(value) if isinstance(value, int) and 2 <= value <= 8 else 1


def _orientation(im: Image.Image) -> int:
    """EXIF orientation of a loaded image, as ``ImageOps.exif_transpose`` reads it."""
    return _orientation_value(im.getexif().get(_ORIENTATION))


def _open_error(p: Path, exc: BaseException) -> ImageError:
    if isinstance(exc, Image.DecompressionBombError):
        return ImageError(p, f"decompression bomb: {exc}")
    if isinstance(exc, UnidentifiedImageError):
        return ImageError(p, "not an image Pillow can identify")
    if isinstance(exc, OSError):
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = f"truncated image ({reason})"
        return ImageError(p, f"cannot decode: {reason}")
    return ImageError(p, f"cannot decode: {type(exc).__name__}: {exc}")


# what Pillow's plugins raise on malformed files
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, MemoryError, EOFError, IndexError, KeyError,
                  struct.error, Image.DecompressionBombError)


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image as :func:`load_image` returns it, read from the file's
    header without decoding pixels: EXIF orientations 5-8 (rotated by 90 degrees) swap the two.

    Raises:
        ImageError: the file is missing, empty or not an image Pillow can identify.

    >>> from PIL import Image
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "w.png"); Image.new("RGB", (30, 20)).save(p)
    >>> read_image_size(p)
    (30, 20)
    """
    p = Path(path)
    _check_file(p)
    try:
        with _camloc_pixel_limit(), open(p, "rb") as fh, Image.open(fh) as im:
            w, h = im.size
            orientation = _header_orientation(im, fh)
            # Pillow's TIFF reader reports the upright size already (and turns on load)
            stored = getattr(im, "_tile_size", None) if im.format == "TIFF" else None
            if stored is not None and tuple(stored) != (w, h):
                orientation = 1
    except _DECODE_ERRORS as exc:
        raise _open_error(p, exc) from exc
    return (h, w) if orientation in _SWAPS_AXES else (w, h)


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


def _transpose_box(box: tuple[float, float, float, float], size: tuple[int, int],
                   orientation: int) -> tuple[float, float, float, float]:
    """Where ``box`` (in an image of ``size``) lies after ``exif_transpose`` of that
    orientation."""
    x0, y0, x1, y1 = box
    w, h = size
    return {
        1: (x0, y0, x1, y1),
        2: (w - x1, y0, w - x0, y1),             # FLIP_LEFT_RIGHT
        3: (w - x1, h - y1, w - x0, h - y0),     # ROTATE_180
        4: (x0, h - y1, x1, h - y0),             # FLIP_TOP_BOTTOM
        5: (y0, x0, y1, x1),                     # TRANSPOSE
        6: (h - y1, x0, h - y0, x1),             # ROTATE_270
        7: (h - y1, w - x1, h - y0, w - x0),     # TRANSVERSE
        8: (y0, w - x1, y1, w - x0),             # ROTATE_90
    }[orientation]


def _reducible(im: Image.Image) -> tuple[Image.Image, bool]:
    """``im`` in a mode ``Image.reduce`` handles; ``True`` when it was 16-bit."""
    mode = im.mode
    if mode.startswith("I;16"):
        return im.convert("I"), True
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB"), False
    if mode in ("1", "PA"):
        return im.convert("L" if mode == "1" else "RGBA"), False
    return im, False


def _decode(p: Path, max_pixels: int,
            need: Callable[[tuple[int, int]], tuple[int, int]] | None) -> Image.Image:
    _check_file(p)
    try:
        with _camloc_pixel_limit(), open(p, "rb") as fh:
            im = Image.open(fh)
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(p, f"{w}x{h} = {w * h} pixels exceeds the limit of "
                                    f"{max_pixels} (possible decompression bomb)")
            box: tuple[float, float, float, float] = (0.0, 0.0, float(w), float(h))
            want: tuple[int, int] | None = None
            if need is not None:
                need((w, h))  # refuses sizes the caller cannot use before any pixel is decoded
            if need is not None and im.format in ("JPEG", "MPO"):
                orientation = _header_orientation(im, fh)
                swap = orientation in _SWAPS_AXES
                nw, nh = need((h, w) if swap else (w, h))
                want = (nh, nw) if swap else (nw, nh)
                if min(w // max(want[0], 1), h // max(want[1], 1)) >= 2:
                    drafted = im.draft(None, want)
                    if drafted is not None:
                        box = tuple(float(v) for v in drafted[1])  # type: ignore[assignment]
            im.load()
            sixteen = im.mode.startswith("I;16")
            if need is not None:
                orientation = _orientation(im)
                swap = orientation in _SWAPS_AXES
                nw, nh = need((h, w) if swap else (w, h))
                want = (nh, nw) if swap else (nw, nh)
                factor = min(im.size[0] // max(want[0], 1), im.size[1] // max(want[1], 1))
                if factor >= 2:
                    im, sixteen = _reducible(im)
                    im = im.reduce(factor)
                    box = tuple(v / factor for v in box)  # type: ignore[assignment]
            before = im.size
            orientation = _orientation(im)
            ImageOps.exif_transpose(im, in_place=True)
            if orientation != 1:
                box = _transpose_box(box, before, orientation)
                w, h = (h, w) if orientation in _SWAPS_AXES else (w, h)
            out = _to_rgb8(im, sixteen)
    except ImageError:
        raise
    except _DECODE_ERRORS as exc:
        raise _open_error(p, exc) from exc
    out.info[_INFO_ORIGINAL] = (w, h)
    out.info[_INFO_DECODED] = out.size
    out.info[_INFO_BOX] = box
    out.info[_INFO_PATH] = str(p)
    return out


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS, *,
               min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode ``path`` into an upright 8-bit RGB image, or raise :class:`ImageError`.

    Args:
        path: the image file.
        max_pixels: refuse images whose header claims more pixels (width x height) than this;
            this limit replaces Pillow's own ``MAX_IMAGE_PIXELS`` for the call.
        min_size: ``(width, height)`` the caller needs at least (upright). When given, a large
            image is decoded reduced by an integer factor (JPEG DCT scaling, else
            ``Image.reduce``) but never below ``min_size`` on either axis; the result's
            :func:`original_size` is still the full size. ``None`` (default): full size.

    >>> from PIL import Image
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "big.jpg"); Image.new("RGB", (4000, 3000)).save(p)
    >>> im = load_image(p, min_size=(600, 600))
    >>> im.size, original_size(im)
    ((1000, 750), (4000, 3000))
    """
    max_pixels = _check_max_pixels(max_pixels)
    need = None
    if min_size is not None:
        try:
            mw, mh = (int(v) for v in min_size)
        except (TypeError, ValueError):
            raise ConfigError(f"min_size={min_size!r}: expected (width, height)") from None
        if mw < 1 or mh < 1:
            raise ConfigError(f"min_size={min_size!r}: expected positive (width, height)")
        need = lambda _size: (mw, mh)  # noqa: E731
    return _decode(Path(path), max_pixels, need)


def check_resized_size(path: str | os.PathLike[str], size: tuple[int, int],
                       preprocess: Preprocess) -> tuple[int, int]:
    """The ``(width, height)`` an image of upright ``size`` is resized to by ``preprocess``;
    raise :class:`ImageError` naming ``path`` when that exceeds :data:`MAX_RESIZED_PIXELS`
    (an extreme aspect ratio with ``fit="crop"``).

    >>> from camloc.models.spec import Preprocess
    >>> check_resized_size("thin.png", (1, 60000), Preprocess(fit="crop"))
    Traceback (most recent call last):
    ...
    camloc.errors.ImageError: thin.png: 1x60000 resized for the model would be 256x15360000 \
pixels, over the limit of 16777216 (aspect ratio 60000:1 too extreme for fit='crop'; use \
--fit stretch)
    """
    w, h = (int(v) for v in size)
    rw, rh = preprocess.resize_size(w, h)
    if rw * rh > MAX_RESIZED_PIXELS:
        ratio = f"{max(w, h) // max(1, min(w, h))}:1"
        hint = f"aspect ratio {ratio} too extreme for fit={preprocess.fit!r}"
        if preprocess.fit == "crop":
            hint += "; use --fit stretch"
        raise ImageError(path, f"{w}x{h} resized for the model would be {rw}x{rh} pixels, over "
                               f"the limit of {MAX_RESIZED_PIXELS} ({hint})")
    return rw, rh


def load_image_for(path: str | os.PathLike[str], preprocess: Preprocess,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """:func:`load_image`, decoded no larger than needed for ``preprocess``: at least
    :data:`REDUCING_GAP` times the size it resizes the image to, on each axis. Pass the result
    to :func:`to_tensor` with the same ``preprocess``; :func:`original_size` gives the full size.

    Memory: an 8,000 x 8,000 JPEG is decoded at 1,000 x 1,000 for a 224 x 224 input. An image
    the resize would make larger than :data:`MAX_RESIZED_PIXELS` is refused
    (:func:`check_resized_size`) before its pixels are decoded.
    """
    max_pixels = _check_max_pixels(max_pixels)

    def need(size: tuple[int, int]) -> tuple[int, int]:
        rw, rh = check_resized_size(path, size, preprocess)
        return REDUCING_GAP * rw, REDUCING_GAP * rh

    return _decode(Path(path), max_pixels, need)


def original_size(image: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of the image file ``image`` was decoded from (upright), even when it
    was decoded reduced; ``image.size`` for any other image (or one resized since)."""
    info = image.info
    if info.get(_INFO_DECODED) == image.size and _INFO_ORIGINAL in info:
        w, h = info[_INFO_ORIGINAL]
        return int(w), int(h)
    return image.size


def _source_box(image: Image.Image) -> tuple[float, float, float, float] | None:
    """The region of a reduced decode that is the whole original image (``None``: full size)."""
    info = image.info
    if info.get(_INFO_DECODED) != image.size or _INFO_BOX not in info:
        return None
    box = tuple(float(v) for v in info[_INFO_BOX])
    if box == (0.0, 0.0, float(image.size[0]), float(image.size[1])):
        return None
    return box  # type: ignore[return-value]


def _to_rgb8(im: Image.Image, sixteen: bool = False) -> Image.Image:
    """8-bit RGB without copying an image that already is."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        if sixteen or mode.startswith("I;16"):
            arr = arr / np.float32(257.0)
        else:
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            if mode == "I" and lo >= 0 and hi <= 255:
                pass
            elif mode == "I" and lo >= 0 and hi <= 65535:
                arr = arr / np.float32(257.0)
            else:
                arr = (arr - np.float32(lo)) * np.float32(255.0 / (hi - lo)) if hi > lo \
                    else np.zeros_like(arr)
        arr = np.nan_to_num(arr).clip(0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, (0, 0), rgba)  # over white, weighted by alpha
        return out
    return im.convert("RGB")


# --------------------------------------------------------------------------------------------------
# To the network
# --------------------------------------------------------------------------------------------------


def to_tensor(image: Image.Image, preprocess: Preprocess) -> tuple[torch.Tensor, Geometry]:
    """Resize (and crop) ``image`` as ``preprocess`` says; return the normalised ``(3, H, W)``
    tensor and the geometry that maps input pixels back to the original image.

    The geometry is computed from :func:`original_size`, so an image decoded reduced by
    :func:`load_image_for` maps to the original file's pixels exactly as a full decode would.

    Raises:
        ImageError: the resized image would exceed :data:`MAX_RESIZED_PIXELS`.
    """
    import torch

    ow, oh = original_size(image)
    rw, rh = check_resized_size(image.info.get(_INFO_PATH, "image"), (ow, oh), preprocess)
    geom = preprocess.geometry(ow, oh)
    filt = _PIL_FILTERS[preprocess.interpolation]
    box = _source_box(image)
    if box is not None:
        resized = image.resize((rw, rh), filt, box=box)
    elif (rw, rh) != image.size:
        resized = image.resize((rw, rh), filt)
    else:
        resized = image
    if preprocess.fit == "crop":
        ih, iw = preprocess.input_size
        left, top = int(geom.offset_x), int(geom.offset_y)
        resized = resized.crop((left, top, left + iw, top + ih))
    arr = np.asarray(resized, dtype=np.float32) / 255.0
    mean = np.asarray(preprocess.mean, dtype=np.float32)
    std = np.asarray(preprocess.std, dtype=np.float32)
    arr = (arr - mean) / std
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), geom


def batch_images(images: Sequence[Image.Image], preprocess: Preprocess
                 ) -> tuple[torch.Tensor, list[Geometry]]:
    """Stack several images into one ``(N, 3, H, W)`` batch with their geometries (each from
    the image's :func:`original_size`)."""
    import torch

    if not images:
        raise ConfigError("images: empty batch")
    tensors, geoms = zip(*(to_tensor(im, preprocess) for im in images))
    return torch.stack(list(tensors)), list(geoms)


def find_images(inputs: Iterable[str | os.PathLike[str]], recursive: bool = True
                ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (recursively) and glob patterns into image paths.

    Returns ``(paths, problems)``; ``problems`` lists inputs that matched nothing, and folders
    that could not be read (permission denied, ...), as ``(input or folder, reason)``.
    Explicitly named files are kept whatever their extension (they are reported later if they
    fail to decode); folders and globs keep known image extensions.
    """
    import glob

    from camloc.data.paths import walk_files

    out: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        rp = p.resolve()
        if rp not in seen:
            seen.add(rp)
            out.append(p)

    def unreadable(folder: Path, exc: OSError) -> None:
        problems.append((str(folder), f"cannot read folder: {exc.strerror or exc}"))

    for raw in inputs:
        s = str(raw)
        p = Path(s)
        if p.is_file():
            add(p)
        elif p.is_dir():
            before = len(problems)
            if recursive:
                files = list(walk_files(p, unreadable, skip_hidden=False))
            else:
                try:
                    files = sorted(q for q in p.iterdir() if q.is_file())
                except OSError as exc:
                    unreadable(p, exc)
                    files = []
            found = sorted(q for q in files if q.suffix.lower() in IMAGE_EXTENSIONS
                           and not q.name.startswith(".") and q.is_file())
            if not found and len(problems) == before:
                problems.append((s, "folder contains no images"))
            for q in found:
                add(q)
        elif any(ch in s for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(s, recursive=True))
            matches = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS]
            if not matches:
                problems.append((s, "pattern matched no images"))
            for q in matches:
                add(q)
        else:
            problems.append((s, "no such file or folder"))
    return out, problems
