"""Builders of small dataset trees for the reader tests (tests/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def touch(path: Path, data: bytes = b"\xff\xd8fake") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def write_png(path: Path, array: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", array)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture
def wsol_root(tmp_path: Path) -> Path:
    """root/metadata/{image_ids,class_labels,image_sizes,localization}.txt + root/images/*.jpg;
    CRLF line ends, a BOM and trailing blank lines on purpose."""
    root = tmp_path / "wsolset"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        touch(root / "images" / name)
    m = root / "metadata"
    write(m / "image_ids.txt", "\ufeffimages/a.jpg\r\nimages/b.jpg\r\nimages/c.jpg\r\n\r\n\r\n")
    write(m / "class_labels.txt", "images/a.jpg,0\nimages/b.jpg,2\nimages/c.jpg,2\n\n")
    write(m / "image_sizes.txt", "images/a.jpg,100,80\nimages/b.jpg,64,64\nimages/c.jpg,50,40\n")
    write(m / "localization.txt",
          "images/a.jpg,1.5,2.25,50.75,60\n"
          "images/b.jpg,0,0,64,64\n"
          "images/a.jpg,10,10,20,20\n"
          "images/c.jpg,3,4,5,6\n\n")
    return root


@pytest.fixture
def openimages_root(tmp_path: Path) -> Path:
    """wsolevaluation OpenImages layout: metadata/OpenImages/test/ with mask lines, images and
    masks under a separate dataset/OpenImages/ root."""
    meta = tmp_path / "metadata" / "OpenImages" / "test"
    data = tmp_path / "dataset" / "OpenImages"
    touch(data / "test" / "cls" / "img1.jpg")
    touch(data / "test" / "cls" / "img2.jpg")
    m1 = np.zeros((20, 30), np.uint8)
    m1[2:8, 3:10] = 255
    m2 = np.zeros((20, 30), np.uint8)
    m2[10:15, 20:28] = 255
    ign = np.zeros((20, 30), np.uint8)
    ign[0:12, 0:15] = 255   # overlaps m1 and some background
    write_png(data / "test" / "cls" / "img1_m1.png", m1)
    write_png(data / "test" / "cls" / "img1_m2.png", m2)
    write_png(data / "test" / "cls" / "img1_ignore.png", ign)
    write_png(data / "test" / "cls" / "img2_m1.png", m2)
    write(meta / "image_ids.txt", "test/cls/img1.jpg\ntest/cls/img2.jpg\n")
    write(meta / "class_labels.txt", "test/cls/img1.jpg,0\ntest/cls/img2.jpg,1\n")
    write(meta / "localization.txt",
          "test/cls/img1.jpg,test/cls/img1_m1.png,test/cls/img1_ignore.png\n"
          "test/cls/img1.jpg,test/cls/img1_m2.png,\n"
          "test/cls/img2.jpg,test/cls/img2_m1.png,\n")
    return tmp_path


@pytest.fixture
def cub_root(tmp_path: Path) -> Path:
    """A CUB_200_2011 tree with 3 classes and 5 images."""
    root = tmp_path / "CUB_200_2011"
    classes = ["001.Albatross", "002.Auklet", "003.Blackbird"]
    images = [("1", "001.Albatross/a1.jpg", 1, 1), ("2", "001.Albatross/a2.jpg", 1, 0),
              ("3", "002.Auklet/b1.jpg", 2, 1), ("4", "003.Blackbird/c1.jpg", 3, 0),
              ("5", "003.Blackbird/c2.jpg", 3, 1)]
    for _, rel, _, _ in images:
        touch(root / "images" / rel)
    write(root / "classes.txt", "".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    write(root / "images.txt", "".join(f"{k} {rel}\n" for k, rel, _, _ in images))
    write(root / "image_class_labels.txt", "".join(f"{k} {c}\n" for k, _, c, _ in images))
    write(root / "train_test_split.txt", "".join(f"{k} {t}\n" for k, _, _, t in images))
    write(root / "bounding_boxes.txt",
          "1 60.0 27.0 325.0 304.0\n2 14.5 112.0 388.0 186.0\n3 0.0 0.0 10.0 10.0\n"
          "4 33.0 53.0 251.0 395.0\n5 27.0 4.0 199.0 201.0\n")
    return tmp_path


SYNSETS = ["n01440764", "n01443537", "n01484850"]
MAPPING = "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n" \
          "n01484850 great white shark\n"


def xml_annotation(stem: str, objects: list[tuple[str, tuple[float, ...]]],
                   size: tuple[int, int] = (500, 375)) -> str:
    objs = "".join(
        f"\t<object>\n\t\t<name>{syn}</name>\n\t\t<bndbox>\n\t\t\t<xmin>{b[0]}</xmin>\n"
        f"\t\t\t<ymin>{b[1]}</ymin>\n\t\t\t<xmax>{b[2]}</xmax>\n\t\t\t<ymax>{b[3]}</ymax>\n"
        f"\t\t</bndbox>\n\t</object>\n" for syn, b in objects)
    return (f"<annotation>\n\t<folder>val</folder>\n\t<filename>{stem}</filename>\n"
            f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n"
            f"\t\t<depth>3</depth>\n\t</size>\n{objs}</annotation>\n")


@pytest.fixture
def xml_root(tmp_path: Path) -> Path:
    """val/*.JPEG + bbox/*.xml + LOC_synset_mapping.txt."""
    root = tmp_path / "ilsvrc"
    specs = {
        "ILSVRC2012_val_00000001": [("n01484850", (10, 20, 200, 300))],
        "ILSVRC2012_val_00000002": [("n01440764", (0, 0, 499, 374)), ("n01440764", (5.5, 6, 7, 8))],
        "ILSVRC2012_val_00000003": [("n01443537", (100, 100, 150, 160))],
    }
    for stem, objs in specs.items():
        touch(root / "val" / f"{stem}.JPEG")
        write(root / "bbox" / f"{stem}.xml", xml_annotation(stem, objs))
    write(root / "LOC_synset_mapping.txt", MAPPING)
    return root


@pytest.fixture
def csv_root(tmp_path: Path) -> Path:
    """Kaggle layout: LOC_val_solution.csv, LOC_synset_mapping.txt, ILSVRC/Data/CLS-LOC/val/."""
    root = tmp_path / "kaggle"
    img = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    for i in (1, 2, 3):
        touch(img / f"ILSVRC2012_val_0000000{i}.JPEG")
    write(root / "LOC_val_solution.csv",
          "ImageId,PredictionString\r\n"
          "ILSVRC2012_val_00000002,n01443537 11 12 100 120 n01443537 1 2 3 4 \r\n"
          "ILSVRC2012_val_00000001,n01484850 0 0 50.5 60 \r\n"
          "ILSVRC2012_val_00000003,n01440764 5 5 6 6\r\n\r\n")
    write(root / "LOC_synset_mapping.txt", MAPPING)
    return root


class _Files:
    touch = staticmethod(touch)
    write = staticmethod(write)
    write_png = staticmethod(write_png)
    xml = staticmethod(xml_annotation)
    SYNSETS = SYNSETS
    MAPPING = MAPPING


@pytest.fixture
def files() -> type[_Files]:
    """File-writing helpers (``files.touch``, ``files.write``, ``files.write_png``, ``files.xml``)."""
    return _Files


def _problems_of(*args, **kw) -> list[tuple[str, int, str]]:
    from camloc.data.datasets import open_dataset
    from camloc.errors import DatasetError

    with pytest.raises(DatasetError) as err:
        open_dataset(*args, **kw)
    probs = err.value.problems
    assert probs, "a DatasetError must list its problems"
    # the message shows the first problems with file:line and the total count
    f, n, why = probs[0]
    assert (f"{f}:{n}: {why}" if n > 0 else f"{f}: {why}") in str(err.value)
    assert f"({len(probs)} problem" in str(err.value)
    return probs


@pytest.fixture
def problems_of():
    """``problems_of(path, **kw)``: open_dataset must raise a DatasetError whose message shows
    its first problem as ``file:line: reason``; returns the problems."""
    return _problems_of
