"""Every kind of awkward input: decoded correctly or refused by name and reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from camloc.data.images import find_images, load_image
from camloc.errors import ImageError


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_modes_become_rgb8(tmp_path):
    gray = _save(Image.new("L", (20, 10), 100), tmp_path / "gray.png")
    assert load_image(gray).getpixel((0, 0)) == (100, 100, 100)

    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red -> white
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = load_image(_save(rgba, tmp_path / "rgba.png"))
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)

    pal = Image.new("P", (5, 5), 3)
    pal.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 200, 100, 50] + [0] * 756)
    assert load_image(_save(pal, tmp_path / "pal.png")).getpixel((2, 2)) == (200, 100, 50)

    cmyk = Image.new("CMYK", (6, 6), (0, 255, 255, 0))  # red in CMYK
    r, g, b = load_image(_save(cmyk, tmp_path / "cmyk.jpg", quality=95)).getpixel((3, 3))
    assert r > 200 and g < 60 and b < 60

    arr16 = np.full((8, 8), 65535, np.uint16)
    arr16[0, 0] = 0
    im16 = Image.fromarray(arr16)
    assert im16.mode.startswith("I;16")
    out16 = load_image(_save(im16, tmp_path / "deep.png"))
    assert out16.getpixel((4, 4)) == (255, 255, 255) and out16.getpixel((0, 0)) == (0, 0, 0)
    arr16[:] = 32896  # mid grey must stay mid grey, not clip to white
    mid = load_image(_save(Image.fromarray(arr16), tmp_path / "mid16.png")).getpixel((1, 1))
    assert mid == (128, 128, 128)

    one = load_image(_save(Image.new("RGB", (1, 1), (1, 2, 3)), tmp_path / "one.png"))
    assert one.size == (1, 1) and one.getpixel((0, 0)) == (1, 2, 3)


def test_exif_rotation_is_applied(tmp_path):
    arr = np.zeros((10, 30, 3), np.uint8)  # wide image, bright left column block
    arr[:, :5] = 255
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (10, 30)  # upright: tall
    top = np.asarray(out)[:5].mean()
    bottom = np.asarray(out)[-5:].mean()
    assert top > 200 and bottom < 50


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "directory", "bomb"])
def test_bad_files_raise_image_error(tmp_path, kind):
    p = tmp_path / f"{kind}.jpg"
    max_pixels = 100_000_000
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("this is not an image\n")
    elif kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
            buf, "JPEG")
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "directory":
        p.mkdir()
    elif kind == "bomb":
        Image.new("L", (400, 300)).save(p.with_suffix(".png"))
        p = p.with_suffix(".png")
        max_pixels = 100 * 100
    with pytest.raises(ImageError) as err:
        load_image(p, max_pixels=max_pixels)
    assert err.value.path == str(p)
    expected = {"missing": "does not exist", "empty": "empty", "text": "not an image",
                "truncated": "truncated", "directory": "directory", "bomb": "decompression bomb"}
    assert expected[kind] in err.value.reason


def test_find_images_expands_folders_globs_and_reports_misses(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    for name in ["a/x.jpg", "a/b/y.PNG", "a/notes.txt", "z.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    paths, problems = find_images([tmp_path / "a", str(tmp_path / "*.png"), tmp_path / "nope.jpg",
                                   tmp_path / "empty", tmp_path / "a" / "x.jpg"])
    names = sorted(p.name for p in paths)
    assert names == ["x.jpg", "y.PNG", "z.png"]  # no duplicates, no .txt
    reasons = dict(problems)
    assert reasons[str(tmp_path / "nope.jpg")] == "no such file or folder"
    assert "no images" in reasons[str(tmp_path / "empty")]
