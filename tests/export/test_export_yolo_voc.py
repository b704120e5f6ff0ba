"""YOLO and VOC exports: exact lines and coordinates, round trips, parsing by VOC readers
(ElementTree, torchvision's VOCDetection parser), folders replaced whole."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from camloc.export import export_results, output_name
from camloc.export.voc import voc_box
from camloc.export.yolo import read_yolo_line

from .conftest import CLASS_NAMES, write_results


def test_yolo_labels_exact(tmp_path, records):
    export_results(write_results(tmp_path, records), tmp_path, ["yolo"], CLASS_NAMES)
    y = tmp_path / "yolo"
    assert (y / "classes.txt").read_text().splitlines() == CLASS_NAMES
    index = [json.loads(line) for line in (y / "index.jsonl").read_text().splitlines()]
    assert [i["image"] for i in index] == [r["path"] for r in records]
    assert [i["label"] for i in index] == [f"labels/{output_name(r['path'])}.txt" for r in records]
    a, b, c = ((y / i["label"]).read_text().splitlines() for i in index)
    # a: 200 x 100; box 10.5..60.25 x 20..80 -> centre 35.375/200, 50/100; size 49.75/200, 60/100
    assert a == ["1 0.176875 0.500000 0.248750 0.600000", "3 0.500000 0.500000 1.000000 1.000000"]
    assert b == ["2 0.265625 0.458333 0.406250 0.750000", "2 0.781250 0.312500 0.312500 0.208333"]
    assert c == []  # a background image: an empty label file


def test_yolo_lines_round_trip_to_the_boxes(tmp_path, records):
    export_results(write_results(tmp_path, records), tmp_path, ["yolo"], CLASS_NAMES)
    rec = records[0]
    lines = (tmp_path / "yolo" / "labels" / f"{output_name(rec['path'])}.txt").read_text()
    for line, cid, box in zip(lines.splitlines(), rec["class_ids"], rec["boxes"]):
        c, back = read_yolo_line(line, rec["width"], rec["height"])
        assert c == cid
        assert back == pytest.approx(box, abs=1e-6 * max(rec["width"], rec["height"]))


def test_reexport_replaces_the_folder(tmp_path, records):
    results = write_results(tmp_path, records)
    export_results(results, tmp_path, ["yolo", "voc"], CLASS_NAMES)
    write_results(tmp_path, records[:1])
    export_results(results, tmp_path, ["yolo", "voc"], CLASS_NAMES)
    assert len(list((tmp_path / "yolo" / "labels").iterdir())) == 1
    assert len(list((tmp_path / "voc").glob("*.xml"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_voc_boxes_are_one_based_inclusive():
    assert voc_box((10.5, 20.0, 60.25, 80.0), 200, 100) == (11, 21, 60, 80)
    assert voc_box((0.0, 0.0, 200.0, 100.0), 200, 100) == (1, 1, 200, 100)
    assert voc_box((5.2, 5.2, 5.3, 5.3), 10, 10) == (6, 6, 6, 6)  # at least one pixel


def test_voc_xml_exact_and_parsed_by_readers(tmp_path, records):
    export_results(write_results(tmp_path, records), tmp_path, ["voc"], CLASS_NAMES)
    v = tmp_path / "voc"
    index = [json.loads(line) for line in (v / "index.jsonl").read_text().splitlines()]
    assert [i["image"] for i in index] == [r["path"] for r in records]
    root = ET.parse(v / index[1]["annotation"]).getroot()
    assert root.findtext("filename") == "b b.png" and root.findtext("path") == records[1]["path"]
    assert [root.findtext(f"size/{k}") for k in ("width", "height", "depth")] == ["64", "48", "3"]
    objs = root.findall("object")
    assert [o.findtext("name") for o in objs] == [CLASS_NAMES[2]] * 2
    assert [[int(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            for o in objs] == [[5, 5, 30, 40], [41, 11, 60, 20]]
    assert [float(o.findtext("score")) for o in objs] == [0.5, 0.5]
    assert ET.parse(v / index[2]["annotation"]).getroot().findall("object") == []

    tv = pytest.importorskip("torchvision.datasets")
    parser = object.__new__(tv.VOCDetection)  # its XML-to-dict parser, without a dataset
    parsed = parser.parse_voc_xml(ET.parse(v / index[0]["annotation"]).getroot())["annotation"]
    assert parsed["size"] == {"width": "200", "height": "100", "depth": "3"}
    assert [o["name"] for o in parsed["object"]] == [CLASS_NAMES[1], CLASS_NAMES[3]]
    assert parsed["object"][0]["bndbox"] == {"xmin": "11", "ymin": "21", "xmax": "60",
                                             "ymax": "80"}


def test_voc_escapes_odd_names(tmp_path):
    rec = {"path": str(tmp_path / "a<&>\"'.jpg"), "width": 10, "height": 10, "class_ids": [0],
           "class_names": ["x & <y>"], "probs": [1.0], "boxes": [[1, 1, 5, 5]]}
    export_results(write_results(tmp_path, [rec]), tmp_path, ["voc"])
    [xml] = (tmp_path / "voc").glob("*.xml")
    root = ET.parse(xml).getroot()
    assert root.findtext("path") == rec["path"] and root.findtext("object/name") == "x & <y>"
