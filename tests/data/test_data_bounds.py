"""Bounds on what one small input may cost: a hardened XML parser for ILSVRC box files, and
images refused when the resize for the model would make them huge (long, thin images under
``fit="crop"``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from camloc.data.datasets import open_dataset
from camloc.data.formats.ilsvrc_xml import MAX_XML_BYTES
from camloc.data.images import (MAX_RESIZED_PIXELS, check_resized_size, load_image,
                                load_image_for, to_tensor)
from camloc.errors import DatasetError, ImageError
from camloc.models.spec import Preprocess


def billion_laughs(levels: int = 9) -> str:
    """An XML file of under a kilobyte whose entities expand to 10**levels copies of 'lol'."""
    ents = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels + 1)]
    return ('<?xml version="1.0"?>\n<!DOCTYPE annotation [\n' + "\n".join(ents) + "\n]>\n"
            f"<annotation><filename>&lol{levels};</filename></annotation>\n")


XML = "bbox/ILSVRC2012_val_00000002.xml"


def test_billion_laughs_is_refused_quickly_naming_the_file(xml_root: Path) -> None:
    bomb = billion_laughs()
    assert len(bomb) < 1000
    (xml_root / XML).write_text(bomb)
    t0 = time.monotonic()
    with pytest.raises(DatasetError) as exc:
        open_dataset(xml_root)
    assert time.monotonic() - t0 < 20  # minutes at 100% CPU before (expat alone: 0.2 s)
    [(line, why)] = [(n, w) for f, n, w in exc.value.problems
                     if f.endswith("ILSVRC2012_val_00000002.xml")]
    assert line == 2
    assert "DOCTYPE" in why and "not read" in why


def test_undeclared_entity_is_malformed(xml_root: Path, files) -> None:
    text = files.xml("ILSVRC2012_val_00000002", [("n01440764", (0, 0, 10, 10))])
    # without a DTD an entity reference is undeclared: plain malformed XML
    (xml_root / XML).write_text(text.replace("<folder>val</folder>", "<folder>&x;</folder>"))
    with pytest.raises(DatasetError) as exc:
        open_dataset(xml_root)
    assert "undefined entity" in str(exc.value)


def test_oversized_xml_is_refused_unread(xml_root: Path, files) -> None:
    text = files.xml("ILSVRC2012_val_00000002", [("n01440764", (0, 0, 10, 10))])
    (xml_root / XML).write_text(text.replace("<folder>val</folder>",
                                             f"<folder>{'v' * MAX_XML_BYTES}</folder>"))
    with pytest.raises(DatasetError, match=r"ILSVRC2012_val_00000002\.xml.*larger than"):
        open_dataset(xml_root)


def test_long_text_is_read_in_linear_time(xml_root: Path, files) -> None:
    """Text split into many character-data calls (entity references) is joined once."""
    text = files.xml("ILSVRC2012_val_00000002", [("n01440764", (0, 0, 10, 10))])
    (xml_root / XML).write_text(text.replace("<folder>val</folder>",
                                             f"<folder>{'a&amp;' * 100_000}</folder>"))
    t0 = time.monotonic()
    ds = open_dataset(xml_root)
    assert time.monotonic() - t0 < 20
    assert len(ds) == 3


# ---- images too large once resized ---------------------------------------------------------


CROP = Preprocess(input_size=(224, 224), fit="crop")


def thin_png(tmp_path: Path, size: tuple[int, int] = (1, 60000)) -> Path:
    p = tmp_path / "thin.png"
    Image.new("RGB", size, (200, 30, 30)).save(p)
    return p


def test_long_thin_image_is_refused_before_decoding(tmp_path: Path) -> None:
    p = thin_png(tmp_path)
    assert p.stat().st_size < 1000
    with pytest.raises(ImageError) as exc:
        load_image_for(p, CROP)
    assert exc.value.path == str(p)
    assert "1x60000 resized for the model would be 256x15360000" in exc.value.reason
    assert "--fit stretch" in exc.value.reason


@pytest.mark.parametrize("size", [(2, 20000), (20000, 2)])
def test_to_tensor_refuses_what_load_image_decoded(tmp_path: Path, size: tuple[int, int]) -> None:
    p = thin_png(tmp_path, size)
    im = load_image(p)  # 40,000 pixels: fine on its own
    with pytest.raises(ImageError, match=r"thin\.png: .*over the limit of 16777216"):
        to_tensor(im, CROP)
    x, _ = to_tensor(im, CROP.with_(fit="stretch"))  # stretch: always the input size
    assert tuple(x.shape) == (3, 224, 224)


def test_panoramas_within_the_cap_are_kept(tmp_path: Path) -> None:
    p = thin_png(tmp_path, (6000, 300))  # aspect 20: 5120 x 256 once resized
    x, geom = to_tensor(load_image_for(p, CROP), CROP)
    assert tuple(x.shape) == (3, 224, 224) and geom.width == 6000
    assert check_resized_size(p, (65536, 256), CROP)[0] * 256 <= MAX_RESIZED_PIXELS


# ---- boxes checked against the image's own size when the metadata gives none ---------------


def test_box_outside_header_size_is_refused_with_file_and_line(tmp_path: Path, files) -> None:
    root = tmp_path / "set"
    img = root / "images"
    img.mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (227, 227)).save(img / name)
    files.write(root / "metadata" / "image_ids.txt", "images/a.png\nimages/b.png\n")
    files.write(root / "metadata" / "class_labels.txt", "images/a.png,0\nimages/b.png,1\n")
    files.write(root / "metadata" / "localization.txt",
                "images/a.png,10,10,200,200\nimages/b.png,0,0,5000,5000\n")
    ds = open_dataset(root)
    assert ds[1].size is None and ds[1].box_lines[0][1] == 2
    with pytest.raises(DatasetError) as exc:
        ds.check_sizes()
    [(file, line, why)] = exc.value.problems
    assert file.endswith("localization.txt") and line == 2
    assert "images/b.png: box (0, 0, 5000, 5000) lies outside the 227x227 image" in why
    assert "outside their images" in str(exc.value)
    # the same boxes with a size in the metadata were already refused when read
    files.write(root / "metadata" / "localization.txt", "images/a.png,10,10,200,200\n"
                "images/b.png,0,0,227,227\n")
    assert open_dataset(root).check_sizes() == []


# ---- WordNet ids map onto an ImageNet model's classes --------------------------------------


def test_wordnet_ids() -> None:
    from camloc.data.classes import wordnet_ids

    assert wordnet_ids(["n01440764", "0002.n01443537", "3 n01484850"]) == [
        "n01440764", "n01443537", "n01484850"]
    assert wordnet_ids(["n01440764", "n01440764"]) is None  # not distinct
    assert wordnet_ids(["n0144076", "tench"]) is None
    assert wordnet_ids([]) is None


@pytest.mark.parametrize("names", [["n01484850", "n01440764"],
                                   ["0001.n01484850", "0002.n01440764"]])
def test_wordnet_classes_map_by_synset(tmp_path: Path, names: list[str]) -> None:
    from camloc.data.classes import fit_to_model_classes
    from camloc.data.sample import Dataset, Sample

    model_syns = ["n01440764", "n01443537", "n01484850"]
    model_names = ["tench", "goldfish", "great white shark"]
    ds = Dataset("sub", tmp_path, "cub", None,
                 [Sample("a.jpg", tmp_path / "a.jpg", 0, [], None),
                  Sample("b.jpg", tmp_path / "b.jpg", 1, [], None)], names)
    out = fit_to_model_classes(ds, 3, model_names, synsets=model_syns)
    assert [s.label for s in out.samples] == [2, 0]
    assert out.class_names == model_names and out.synsets == model_syns
    # a model whose own class names are WordNet ids maps the same way
    out2 = fit_to_model_classes(ds, 3, model_syns)
    assert [s.label for s in out2.samples] == [2, 0]


def test_unknown_synset_and_plain_names_say_what_to_pass(tmp_path: Path) -> None:
    from camloc.data.classes import fit_to_model_classes
    from camloc.data.sample import Dataset, Sample

    syns = ["n01440764", "n01443537", "n01484850"]
    ds = Dataset("sub", tmp_path, "csv", None, [Sample("a.jpg", tmp_path / "a.jpg", 0, [], None)],
                 ["n09999999"])
    with pytest.raises(DatasetError, match=r"'n09999999': no model class has this synset"):
        fit_to_model_classes(ds, 3, ["a", "b", "c"], synsets=syns)
    plain = Dataset("sub", tmp_path, "csv", None,
                    [Sample("a.jpg", tmp_path / "a.jpg", 0, [], None)], ["zebra", "okapi"])
    with pytest.raises(DatasetError) as exc:
        fit_to_model_classes(plain, 3, ["a", "b", "c"], synsets=syns)
    assert "--synsets" in str(exc.value) and "WordNet id" in str(exc.value)


def test_synsets_imagenet_names_the_1000_classes(tmp_path: Path, files) -> None:
    pytest.importorskip("timm")
    files.touch(tmp_path / "a.jpg")
    files.write(tmp_path / "annotations.csv", "path,label\na.jpg,n02124075\n")
    ds = open_dataset(tmp_path / "annotations.csv", synsets="imagenet")
    assert ds.num_classes == 1000 and ds[0].label == 285
    assert ds.class_names[285] == "Egyptian cat" and ds.synsets[285] == "n02124075"


@pytest.mark.parametrize("kw, says", [
    ({"input_size": (100000, 100000)}, r"input_size=\(100000, 100000\).*1 to 2048"),
    ({"input_size": (0, 224)}, r"input_size"),
    ({"input_size": (224.5, 224)}, r"whole number"),
    ({"crop_pct": 1e-300}, r"crop_pct=1e-300: expected 0.25 <= crop_pct <= 1"),
])
def test_preprocess_geometry_is_bounded(kw: dict, says: str) -> None:
    """The sizes a model spec may ask for are bounded (a 100000 x 100000 input allocates
    120 GB; a tiny crop_pct makes every resize huge)."""
    from camloc.errors import ConfigError

    with pytest.raises(ConfigError, match=says):
        Preprocess(**kw)
    Preprocess(input_size=(2048, 2048), crop_pct=0.25)  # the bounds themselves are allowed
