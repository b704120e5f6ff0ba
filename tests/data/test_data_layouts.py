"""Layouts and options the docs promise: Kaggle's ILSVRC tree auto-detected; image_root,
synsets and num_classes wherever they make sense; class_source per format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from camloc.data.datasets import detect_format, open_dataset
from camloc.data.open import READER_KW
from camloc.errors import ConfigError, DatasetError

STEMS = ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002", "ILSVRC2012_val_00000003"]
OBJECTS = {STEMS[0]: [("n01484850", (10, 20, 200, 300))],
           STEMS[1]: [("n01440764", (0, 0, 499, 374)), ("n01440764", (5.5, 6, 7, 8))],
           STEMS[2]: [("n01443537", (100, 100, 150, 160))]}


def kaggle_tree(root: Path, files, with_csv: bool = False) -> Path:
    """Kaggle's ``imagenet-object-localization-challenge`` download, val split only."""
    for stem, objs in OBJECTS.items():
        files.touch(root / "ILSVRC" / "Data" / "CLS-LOC" / "val" / f"{stem}.JPEG")
        files.write(root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val" / f"{stem}.xml",
                    files.xml(stem, objs))
    files.write(root / "LOC_synset_mapping.txt", files.MAPPING)
    if with_csv:
        rows = "".join(f"{stem},{' '.join(f'{s} ' + ' '.join(f'{v:g}' for v in b) for s, b in objs)}\n"
                       for stem, objs in OBJECTS.items())
        files.write(root / "LOC_val_solution.csv", "ImageId,PredictionString\n" + rows)
    return root


def test_kaggle_layout_is_detected(tmp_path: Path, files) -> None:
    root = kaggle_tree(tmp_path / "kaggle", files)
    assert detect_format(root) == "ilsvrc-xml"
    ds = open_dataset(root)
    assert ds.format == "ilsvrc-xml" and ds.class_source == "synsets"
    assert [s.image_id for s in ds] == [f"{s}.JPEG" for s in STEMS]
    assert [s.label for s in ds] == [2, 0, 1]
    assert ds.root == (root / "ILSVRC" / "Data" / "CLS-LOC" / "val").resolve()
    np.testing.assert_array_equal(ds[1].boxes, [[0, 0, 499, 374], [5.5, 6, 7, 8]])
    # the ILSVRC/ folder itself works too (the mapping one level up)
    inner = open_dataset(root / "ILSVRC")
    assert [s.label for s in inner] == [2, 0, 1] and inner.class_names == ds.class_names


def test_full_kaggle_download_reads_the_csv(tmp_path: Path, files) -> None:
    root = kaggle_tree(tmp_path / "kaggle", files, with_csv=True)
    assert detect_format(root) == "ilsvrc-csv"
    by_csv = open_dataset(root)
    by_xml = open_dataset(root, format="ilsvrc-xml")
    assert [s.image_id for s in by_csv] == STEMS
    assert [s.label for s in by_csv] == [s.label for s in by_xml]
    for a, b in zip(by_csv, by_xml):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert a.path == b.path
    assert by_xml[0].size == (500, 375) and by_csv[0].size is None


def test_wsolevaluation_imagenet_layout(tmp_path: Path, files) -> None:
    """metadata/ILSVRC/test/*.txt with the images elsewhere and the synset mapping beside."""
    meta = tmp_path / "metadata" / "ILSVRC" / "test"
    ids = [f"val/{s}.JPEG" for s in STEMS]
    files.write(meta / "image_ids.txt", "".join(i + "\n" for i in ids))
    files.write(meta / "class_labels.txt", "".join(f"{i},{k}\n" for k, i in enumerate(ids)))
    for i in ids:
        files.touch(tmp_path / "dataset" / "ILSVRC" / i)
    mapping = files.write(tmp_path / "LOC_synset_mapping.txt", files.MAPPING)
    ds = open_dataset(tmp_path / "metadata" / "ILSVRC", split="test",
                      image_root=tmp_path / "dataset" / "ILSVRC", synsets=mapping,
                      num_classes=3)
    assert ds.split == "test" and ds.class_source == "synsets"
    assert ds.class_names[1] == "goldfish, Carassius auratus"
    assert ds[2].path == (tmp_path / "dataset" / "ILSVRC" / ids[2]).resolve()


def test_image_root_everywhere(tmp_path: Path, cub_root: Path, xml_root: Path, csv_root: Path,
                               files) -> None:
    # cub: images moved elsewhere
    moved = tmp_path / "elsewhere"
    (cub_root / "CUB_200_2011" / "images").rename(moved)
    with pytest.raises(DatasetError, match="image not found"):
        open_dataset(cub_root)
    ds = open_dataset(cub_root, image_root=moved)
    assert ds[0].path == (moved / "001.Albatross" / "a1.jpg").resolve()
    # ilsvrc-*: image_root is the image folder (also spelled images=)
    assert open_dataset(xml_root, image_root=xml_root / "val").root == (xml_root / "val").resolve()
    img = csv_root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    assert open_dataset(csv_root, image_root=img).root == img.resolve()
    with pytest.raises(ConfigError, match="not both"):
        open_dataset(csv_root, image_root=img, images=img)
    # csv / json
    files.touch(tmp_path / "pics" / "a.jpg")
    f = files.write(tmp_path / "ann" / "d.json", json.dumps([{"path": "a.jpg", "label": 0}]))
    assert open_dataset(f, image_root=tmp_path / "pics")[0].path.is_file()
    with pytest.raises(DatasetError, match="image not found"):
        open_dataset(f)
    # folder: the folder is the images
    with pytest.raises(ConfigError, match="does not take image_root"):
        open_dataset(xml_root / "val", format="folder", image_root=tmp_path)


def test_keywords_per_format() -> None:
    """The CLI's --image-root / --synsets / --num-classes map to these keywords."""
    for fmt, kws in READER_KW.items():
        assert "num_classes" in kws
        assert ("image_root" in kws) == (fmt != "folder")
        assert ("synsets" in kws) == (fmt in ("wsol", "csv", "json", "ilsvrc-xml", "ilsvrc-csv"))


def test_synsets_and_num_classes_where_they_make_sense(tmp_path: Path, cub_root: Path,
                                                       csv_root: Path, files) -> None:
    with pytest.raises(ConfigError, match="does not take synsets"):
        open_dataset(cub_root, synsets=files.SYNSETS)
    pets = tmp_path / "pets"
    files.touch(pets / "cat" / "1.jpg")
    files.touch(pets / "dog" / "2.jpg")
    assert open_dataset(pets, num_classes=2).num_classes == 2
    with pytest.raises(DatasetError, match="2 class folders, but num_classes=3"):
        open_dataset(pets, num_classes=3)
    # user csv with synsets (line i = class i, unlike the ILSVRC readers' sorted order)
    f = files.write(pets / "d.csv", "path,label\ncat/1.jpg,0\ndog/2.jpg,1\n")
    ds = open_dataset(f, synsets=["n02", "n01"])
    assert ds.synsets == ["n02", "n01"] and ds.class_names == ["n02", "n01"]
    assert ds.class_source == "synsets"
    # ILSVRC: num_classes checked against the mapping
    assert open_dataset(csv_root, num_classes=3).num_classes == 3
    with pytest.raises(DatasetError, match="3 synsets, but num_classes=4"):
        open_dataset(csv_root, num_classes=4)
    with pytest.raises(ConfigError, match="synsets"):
        open_dataset(csv_root, synsets=["n1", "n1"])


def test_class_source_per_format(wsol_root: Path, cub_root: Path, xml_root: Path,
                                 csv_root: Path, tmp_path: Path, files) -> None:
    assert open_dataset(wsol_root).class_source == "max-id"
    assert open_dataset(wsol_root, num_classes=5).class_source == "num_classes"
    assert open_dataset(wsol_root, classes=["a", "b", "c"]).class_source == "names"
    assert open_dataset(cub_root).class_source == "names"
    assert open_dataset(xml_root).class_source == "synsets"
    assert open_dataset(csv_root).class_source == "synsets"
    (csv_root / "LOC_synset_mapping.txt").unlink()
    assert open_dataset(csv_root).class_source == "synsets-seen"
    files.touch(tmp_path / "pets" / "c" / "x.jpg")
    assert open_dataset(tmp_path / "pets", format="folder").class_source == "names"
