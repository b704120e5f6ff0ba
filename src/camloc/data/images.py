"""Reading images robustly and turning them into network input.

:func:`load_image` returns an 8-bit RGB ``PIL.Image`` for anything Pillow can decode: grayscale,
RGBA and palette images (transparency composited over white), CMYK, 16-bit and float images
(rescaled, not clipped), and EXIF-rotated photos (rotated upright, so boxes match what a viewer
shows). Everything else raises :class:`~camloc.errors.ImageError` naming the file and the reason:
missing, empty, not an image, truncated, or larger than ``max_pixels`` (decompression bombs).

>>> from PIL import Image
>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "g.png"); Image.new("L", (3, 2), 128).save(p)
>>> load_image(p).mode, load_image(p).size
('RGB', (3, 2))
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from camloc.errors import ConfigError, ImageError
from camloc.models.spec import Geometry, Preprocess

__all__ = ["load_image", "to_tensor", "batch_images", "find_images", "IMAGE_EXTENSIONS",
           "DEFAULT_MAX_PIXELS"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm", ".jfif"})
DEFAULT_MAX_PIXELS = 100_000_000  # ~ 10k x 10k

_PIL_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST}


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``path`` into an upright 8-bit RGB image, or raise :class:`ImageError`."""
    p = Path(path)
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(p, f"{w}x{h} = {w * h} pixels exceeds the limit of "
                                        f"{max_pixels} (possible decompression bomb)")
                im.load()
                im = ImageOps.exif_transpose(im) or im
                return _to_rgb8(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(p, f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(p, "not an image Pillow can identify") from exc
    except OSError as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = f"truncated image ({reason})"
        raise ImageError(p, f"cannot decode: {reason}") from exc
    except (ValueError, SyntaxError, MemoryError) as exc:
        raise ImageError(p, f"cannot decode: {type(exc).__name__}: {exc}") from exc


def _to_rgb8(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            if mode == "I" and lo >= 0 and hi <= 255:
                pass
            elif mode == "I" and lo >= 0 and hi <= 65535:
                arr = arr / 257.0
            else:
                arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        arr = np.nan_to_num(arr).clip(0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or im.mode == "RGBA":
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def to_tensor(image: Image.Image, preprocess: Preprocess) -> tuple[torch.Tensor, Geometry]:
    """Resize (and crop) ``image`` as ``preprocess`` says; return the normalised ``(3, H, W)``
    tensor and the geometry that maps input pixels back to the original image."""
    w, h = image.size
    geom = preprocess.geometry(w, h)
    rw, rh = preprocess.resize_size(w, h)
    resized = image.resize((rw, rh), _PIL_FILTERS[preprocess.interpolation]) if (rw, rh) != (w, h) \
        else image
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
    """Stack several images into one ``(N, 3, H, W)`` batch with their geometries."""
    if not images:
        raise ConfigError("images: empty batch")
    tensors, geoms = zip(*(to_tensor(im, preprocess) for im in images))
    return torch.stack(list(tensors)), list(geoms)


def find_images(inputs: Iterable[str | os.PathLike[str]], recursive: bool = True
                ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (recursively) and glob patterns into image paths.

    Returns ``(paths, problems)``; ``problems`` lists inputs that matched nothing, as
    ``(input, reason)``. Explicitly named files are kept whatever their extension (they are
    reported later if they fail to decode); folders and globs keep known image extensions.
    """
    import glob

    out: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        rp = p.resolve()
        if rp not in seen:
            seen.add(rp)
            out.append(p)

    for raw in inputs:
        s = str(raw)
        p = Path(s)
        if p.is_file():
            add(p)
        elif p.is_dir():
            found = sorted(q for q in (p.rglob("*") if recursive else p.glob("*"))
                           if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS
                           and not q.name.startswith("."))
            if not found:
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
