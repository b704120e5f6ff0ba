"""Image sizes from headers (never pixels) and metadata sizes checked against them."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camloc.data.datasets import open_dataset
from camloc.data.images import load_image, read_image_size
from camloc.data.sample import SizeFill
from camloc.errors import DatasetError, ImageError


def exif_bytes(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def png_with_trailing_exif(path: Path, w: int, h: int, orientation: int) -> Path:
    """A PNG whose eXIf chunk comes after the image data (allowed, and Pillow only sees it once
    the pixels are decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = (b"\x00" + b"\x80" * (w * 3)) * h  # filter byte + one row of grey pixels
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"eXIf", exif_bytes(orientation))
            + chunk(b"IEND", b""))
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_read_image_size_matches_decoding(tmp_path: Path, fmt: str, orientation: int) -> None:
    p = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (40, 30), (9, 9, 9)).save(p, fmt, exif=exif_bytes(orientation))
    expected = (30, 40) if orientation in (6, 8) else (40, 30)
    assert read_image_size(p) == expected == load_image(p).size


@pytest.mark.parametrize("orientation", [1, 5, 7])
def test_png_exif_after_the_pixels(tmp_path: Path, orientation: int) -> None:
    p = png_with_trailing_exif(tmp_path / "late.png", 12, 7, orientation)
    assert load_image(p).size == read_image_size(p) == ((7, 12) if orientation > 4 else (12, 7))


def test_read_image_size_decodes_nothing(tmp_path: Path, monkeypatch) -> None:
    p = tmp_path / "x.jpg"
    Image.new("RGB", (64, 48)).save(p, exif=exif_bytes(6))
    q = tmp_path / "y.png"
    Image.new("RGB", (5, 3)).save(q)

    def no_load(self, *a, **k):
        raise AssertionError("pixels decoded")

    from PIL import ImageFile
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    assert read_image_size(p) == (48, 64) and read_image_size(q) == (5, 3)


def test_read_image_size_errors(tmp_path: Path) -> None:
    (tmp_path / "t.jpg").write_text("not an image")
    (tmp_path / "e.jpg").write_bytes(b"")
    for name, words in (("t.jpg", "not an image"), ("e.jpg", "empty"), ("nope.jpg", "does not exist")):
        with pytest.raises(ImageError, match=words):
            read_image_size(tmp_path / name)


def test_fill_sizes_from_headers(tmp_path: Path, files) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (20, 10)).save(tmp_path / "b.jpg", exif=exif_bytes(8))
    files.write(tmp_path / "bad.jpg", "garbage")
    files.write(tmp_path / "annotations.csv", "path,label,x0,y0,x1,y1,width,height\n"
                                              "a.png,0,1,1,5,5,,\nb.jpg,0,,,,,,\nbad.jpg,1,,,,,,\n"
                                              "c.png,1,,,,,7,8\n")
    ds = open_dataset(tmp_path, check_images=False)
    assert [s.size for s in ds] == [None, None, None, (7, 8)]
    result = ds.fill_sizes_from_headers()
    assert result == SizeFill(["a.png", "b.jpg"], [("bad.jpg", "not an image Pillow can identify")])
    assert [s.size for s in ds] == [(40, 30), (10, 20), None, (7, 8)]
    assert ds[0].size_source == (str(tmp_path / "a.png"), 0)
    assert ds[3].size_source == (str(tmp_path / "annotations.csv"), 5)
    assert ds.fill_sizes_from_headers() == SizeFill([], [("bad.jpg",
                                                          "not an image Pillow can identify")])


def test_check_sizes(wsol_root: Path) -> None:
    for name, size in (("a.jpg", (100, 80)), ("b.jpg", (64, 64)), ("c.jpg", (50, 40))):
        Image.new("RGB", size).save(wsol_root / "images" / name)
    ds = open_dataset(wsol_root)
    assert ds[0].size_source == (str(wsol_root / "metadata" / "image_sizes.txt"), 1)
    assert ds.check_sizes() == []
    # c.jpg rotated by EXIF: its upright size is 40x50, which image_sizes.txt does not say
    Image.new("RGB", (50, 40)).save(wsol_root / "images" / "c.jpg", exif=exif_bytes(6))
    # a.jpg transposed in the metadata
    f = wsol_root / "metadata" / "image_sizes.txt"
    f.write_text(f.read_text().replace("images/a.jpg,100,80", "images/a.jpg,80,100"))
    loc = wsol_root / "metadata" / "localization.txt"
    loc.write_text(loc.read_text().replace("images/a.jpg,1.5,2.25,50.75,60",
                                           "images/a.jpg,1.5,2.25,50.75,6"))
    ds = open_dataset(wsol_root)
    with pytest.raises(DatasetError, match="disagree") as err:
        ds.check_sizes()
    assert [(Path(f).name, n) for f, n, _ in err.value.problems] == [("image_sizes.txt", 1),
                                                                    ("image_sizes.txt", 3)]
    assert "the metadata gives 80x100 but the image is 100x80" in err.value.problems[0][2]
    assert len(ds.check_sizes(raise_error=False)) == 2
    assert ds[0].size_mismatch((100, 80)) is not None and ds[1].size_mismatch((64, 64)) is None


def test_check_sizes_xml_and_unreadable_images(xml_root: Path) -> None:
    for i, size in ((1, (500, 375)), (2, (500, 375)), (3, (375, 500))):
        Image.new("RGB", size).save(xml_root / "val" / f"ILSVRC2012_val_0000000{i}.JPEG", "JPEG")
    ds = open_dataset(xml_root)
    probs = ds.check_sizes(raise_error=False)
    assert [(Path(f).name, n) for f, n, _ in probs] == [("ILSVRC2012_val_00000003.xml", 4)]
    (xml_root / "val" / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"\xff\xd8broken")
    assert open_dataset(xml_root).check_sizes() == []   # failed images are the evaluation's


def test_devset_sizes_agree(dev_set: Path) -> None:
    ds = open_dataset(dev_set)
    assert ds.check_sizes() == []
    sizes = [s.size for s in ds]
    assert ds.fill_sizes_from_headers() == SizeFill([], [])  # all given by image_sizes.txt
    assert [s.size for s in ds] == sizes and np.all(np.array(sizes) == 227)
