"""Reduced decoding of large images, the geometry back to original pixels, the pixel limit."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camloc.data import images as I
from camloc.data.images import (DEFAULT_MAX_PIXELS, REDUCING_GAP, find_images, load_image,
                                load_image_for, original_size, read_image_size, to_tensor)
from camloc.errors import ConfigError, ImageError
from camloc.models.spec import Preprocess

STRETCH = Preprocess(input_size=(224, 224), fit="stretch")
CROP = Preprocess(input_size=(224, 224), fit="crop")


def smooth_rgb(w: int, h: int) -> Image.Image:
    """A smooth picture (no detail finer than ~30 px), so reduced and full decodes agree."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    arr = np.stack([np.sin(x / 97.0) * 120 + 128, np.cos(y / 61.0) * 120 + 128,
                    (x + y) / (w + h) * 255], -1)
    return Image.fromarray(arr.round().astype(np.uint8))


def save(img: Image.Image, path: Path, orientation: int = 1, **kw) -> Path:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    img.save(path, exif=exif, **kw)
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Image.Image:
    # odd sizes: the reduced image's last row/column covers a partial block
    return smooth_rgb(3001, 1601)


@pytest.mark.parametrize("ext,orientation", [("png", o) for o in range(1, 9)]
                         + [("jpg", 1), ("jpg", 6), ("jpg", 3)])
@pytest.mark.parametrize("pre", [STRETCH, CROP], ids=["stretch", "crop"])
def test_reduced_decode_maps_to_original_pixels(tmp_path, big, ext, orientation, pre) -> None:
    p = save(big, tmp_path / f"o{orientation}.{ext}", orientation,
             **({"quality": 95} if ext == "jpg" else {"compress_level": 1}))
    full = load_image(p)
    reduced = load_image_for(p, pre)
    upright = (1601, 3001) if orientation in (5, 6, 7, 8) else (3001, 1601)
    assert full.size == upright and original_size(full) == upright
    assert original_size(reduced) == upright
    # smaller, but at least REDUCING_GAP x the resize target on both axes
    assert reduced.size[0] < upright[0] and reduced.size[1] < upright[1]
    rw, rh = pre.resize_size(*upright)
    assert reduced.size[0] >= REDUCING_GAP * rw and reduced.size[1] >= REDUCING_GAP * rh
    t_full, g_full = to_tensor(full, pre)
    t_red, g_red = to_tensor(reduced, pre)
    assert g_red == g_full and (g_red.width, g_red.height) == upright
    diff = (t_full - t_red).abs() * 0.225 * 255  # back to 8-bit grey levels
    assert float(diff.mean()) < 0.5 and float(diff.max()) < 6, (float(diff.mean()), float(diff.max()))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_transposed_box_matches_pillow(orientation) -> None:
    """The region of the decoded image that covers the original, after an EXIF transpose,
    found by transposing a marked image with Pillow itself."""
    from PIL import ImageOps

    w, h = 40, 25
    box = (0.0, 0.0, 37.0, 21.0)  # integer corners so the marked region is exact
    arr = np.zeros((h, w), np.uint8)
    arr[0:21, 0:37] = 255
    im = Image.fromarray(arr)
    ex = Image.Exif()
    ex[0x0112] = orientation
    im.info["exif"] = ex.tobytes()
    out = ImageOps.exif_transpose(im)
    ys, xs = np.nonzero(np.asarray(out))
    expected = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert I._transpose_box(box, (w, h), orientation) == tuple(float(v) for v in expected)


def test_small_images_are_never_reduced(tmp_path) -> None:
    """The dev set's 227 x 227 photos: the same pixels and the same tensor with or without
    load_image_for."""
    p = save(smooth_rgb(227, 227), tmp_path / "dev.jpg", quality=90)
    a, b = load_image(p), load_image_for(p, STRETCH)
    assert a.size == b.size == (227, 227)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert bool((to_tensor(a, STRETCH)[0] == to_tensor(b, STRETCH)[0]).all())


def test_devset_tensors_unchanged(dev_set) -> None:
    ids = (dev_set / "metadata" / "image_ids.txt").read_text().split()[:8]
    for rel in ids:
        p = dev_set / rel
        a, b = load_image(p), load_image_for(p, STRETCH)
        assert a.size == b.size == original_size(b)
        assert bool((to_tensor(a, STRETCH)[0] == to_tensor(b, STRETCH)[0]).all())


def test_min_size_and_original_size_after_edits(tmp_path, big) -> None:
    p = save(big, tmp_path / "b.jpg", quality=90)
    im = load_image(p, min_size=(600, 300))
    assert im.size == (751, 401) and original_size(im) == (3001, 1601)  # JPEG scale 1/4
    # an image changed since decoding is its own original
    assert original_size(im.resize((10, 10))) == (10, 10)
    assert original_size(im.crop((0, 0, 5, 5))) == (5, 5)
    for bad in ((0, 5), (5,), "ab", None.__class__):
        with pytest.raises(ConfigError, match="min_size"):
            load_image(p, min_size=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# The pixel limit: camloc's max_pixels, not Pillow's MAX_IMAGE_PIXELS
# --------------------------------------------------------------------------------------------------


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` but whose data is a few bytes: cheap to
    write, and it fails to decode only after the size checks."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def test_pixel_limit_is_camlocs(tmp_path) -> None:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    assert pillow_limit is not None and pillow_limit < DEFAULT_MAX_PIXELS
    # 95M pixels: above Pillow's 89M, below camloc's 100M -> passes the limit, then fails to
    # decode because the data is missing (not "decompression bomb")
    below = png_header(tmp_path / "below.png", 10_000, 9_500)
    with pytest.raises(ImageError) as err:
        load_image(below)
    assert "bomb" not in err.value.reason and "exceeds" not in err.value.reason
    assert "cannot decode" in err.value.reason
    # 100,000,001 pixels: just above camloc's limit
    above = png_header(tmp_path / "above.png", 100_000_001, 1)
    with pytest.raises(ImageError, match="exceeds the limit of 100000000"):
        load_image(above)
    # 200M: beyond Pillow's hard error (179M); a caller allowing 300M gets camloc's decision
    huge = png_header(tmp_path / "huge.png", 20_000, 10_000)
    with pytest.raises(ImageError) as err:
        load_image(huge, max_pixels=300_000_000)
    assert "bomb" not in err.value.reason and "cannot decode" in err.value.reason
    with pytest.raises(ImageError, match="exceeds the limit of 1000"):
        load_image(below, max_pixels=1000)
    # headers are read whatever their size; Pillow's global is back as it was
    assert read_image_size(huge) == (20_000, 10_000)
    assert Image.MAX_IMAGE_PIXELS == pillow_limit
    for bad in (0, -5, 1.5, True, "10"):
        with pytest.raises(ConfigError, match="max_pixels"):
            load_image(below, max_pixels=bad)  # type: ignore[arg-type]


def test_pillow_limit_restored_after_errors_and_nesting(tmp_path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    with I._camloc_pixel_limit():
        assert Image.MAX_IMAGE_PIXELS is None
        with I._camloc_pixel_limit():  # nested (or another thread's) read
            assert Image.MAX_IMAGE_PIXELS is None
        assert Image.MAX_IMAGE_PIXELS is None
    assert Image.MAX_IMAGE_PIXELS == before
    with pytest.raises(ImageError):
        load_image(png_header(tmp_path / "x.png", 50, 50))
    assert Image.MAX_IMAGE_PIXELS == before


# --------------------------------------------------------------------------------------------------
# Folders that cannot be read
# --------------------------------------------------------------------------------------------------


def test_find_images_reports_unreadable_subfolder(tmp_path, monkeypatch) -> None:
    for rel in ("a/x.jpg", "a/locked/y.jpg", "a/ok/z.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    locked = str(tmp_path / "a" / "locked")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    paths, problems = find_images([tmp_path / "a"])
    assert sorted(p.name for p in paths) == ["x.jpg", "z.png"]
    assert problems == [(locked, "cannot read folder: Permission denied")]


# --------------------------------------------------------------------------------------------------
# Memory (issue #11's goal: explaining an 8,000 x 8,000 photo in < 1.5 GB)
# --------------------------------------------------------------------------------------------------

_MEASURE = r"""
import gc, resource, sys
from camloc.data.images import load_image, load_image_for, to_tensor
from camloc.models.spec import Preprocess
pre = Preprocess(input_size=(224, 224))
gc.collect()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
im = load_image_for(sys.argv[1], pre) if sys.argv[2] == "reduced" else load_image(sys.argv[1])
to_tensor(im, pre)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
def test_peak_memory_of_an_8000px_photo(tmp_path) -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    jpg, png = tmp_path / "big.jpg", tmp_path / "big.png"
    make = ("import numpy as np, sys; from PIL import Image; "
            "a = np.zeros((8000, 8000, 3), np.uint8); a[::7, :, 0] = 200; a[:, ::5, 1] = 90; "
            "im = Image.fromarray(a); im.save(sys.argv[1], quality=90); "
            "im.save(sys.argv[2], compress_level=1)")
    subprocess.run([sys.executable, "-c", make, str(jpg), str(png)], check=True, env=env)
    peaks = {}
    for path in (jpg, png):
        for variant in ("reduced", "full"):
            out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), variant],
                                 capture_output=True, text=True, env=env, check=True)
            peaks[(path.suffix, variant)] = float(out.stdout.strip())
    # one 8000 x 8000 RGB image is 244 MiB in Pillow (4 bytes a pixel); nothing more is held
    assert peaks[(".jpg", "reduced")] < 64, peaks       # decoded at 1000 x 1000
    assert peaks[(".png", "reduced")] < 320, peaks      # PNG: one full decode, then reduced
    assert peaks[(".jpg", "full")] < 320 and peaks[(".png", "full")] < 320, peaks
