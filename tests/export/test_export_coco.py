"""COCO export: loads with pycocotools, exact boxes, detections usable by COCO.loadRes and
COCOeval (scoring the detections against the instances made from the same boxes gives AP 1)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from camloc.export import export_results, parse_formats
from camloc.errors import ConfigError

from .conftest import CLASS_NAMES, write_results

pycocotools = pytest.importorskip("pycocotools")


def test_instances_load_in_pycocotools_with_exact_boxes(tmp_path, records):
    from pycocotools.coco import COCO

    results = write_results(tmp_path, records)
    export_results(results, tmp_path, ["coco"], CLASS_NAMES, {"threshold": 0.2})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "coco" / "instances.json"))
    assert sorted(gt.getCatIds()) == [1, 2, 3, 4]
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == CLASS_NAMES
    assert [c["camloc_class_id"] for c in gt.loadCats(gt.getCatIds())] == [0, 1, 2, 3]
    assert gt.getImgIds() == [1, 2, 3]
    a, b, c = gt.loadImgs([1, 2, 3])
    assert (a["file_name"], a["width"], a["height"]) == (records[0]["path"], 200, 100)
    assert b["file_name"] == "val/b b.png" and b["camloc_path"] == records[1]["path"]
    anns = gt.loadAnns(gt.getAnnIds())
    # image 1: two classes, one box each; image 2 (--multi): two components of class 2, the
    # empty box of class 0 left out; image 3: none
    assert [(x["image_id"], x["category_id"], x["bbox"], x["score"]) for x in anns] == [
        (1, 2, [10.5, 20.0, 49.75, 60.0], 0.75),
        (1, 4, [0.0, 0.0, 200.0, 100.0], 0.125),
        (2, 3, [4.0, 4.0, 26.0, 36.0], 0.5),
        (2, 3, [40.0, 10.0, 20.0, 10.0], 0.5),
    ]
    assert [x["area"] for x in anns] == [2985.0, 20000.0, 936.0, 200.0]
    assert all(x["iscrowd"] == 0 for x in anns) and [x["id"] for x in anns] == [1, 2, 3, 4]
    assert gt.getAnnIds(imgIds=[3]) == []
    info = json.loads((tmp_path / "coco" / "instances.json").read_text())["info"]
    assert info["threshold"] == 0.2


def test_detections_evaluate_to_ap_1_against_their_own_instances(tmp_path, records):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    export_results(write_results(tmp_path, records), tmp_path, ["coco"], CLASS_NAMES)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "coco" / "instances.json"))
        dt = gt.loadRes(str(tmp_path / "coco" / "detections.json"))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert len(dt.getAnnIds()) == 4
    assert ev.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
    assert ev.stats[1] == pytest.approx(1.0)  # AP@.5


def test_a_shifted_box_is_caught_by_cocoeval(tmp_path, records):
    """The oracle can fail: move one detection and AP@.75 drops below 1."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    export_results(write_results(tmp_path, records), tmp_path, ["coco"], CLASS_NAMES)
    dets = json.loads((tmp_path / "coco" / "detections.json").read_text())
    dets[0]["bbox"][0] += 20
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "coco" / "instances.json"))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[2] < 1.0


def test_categories_from_records_without_class_names(tmp_path, records):
    from pycocotools.coco import COCO

    export_results(write_results(tmp_path, records), tmp_path, ["coco"])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "coco" / "instances.json"))
    assert {c["camloc_class_id"]: c["name"] for c in gt.loadCats(gt.getCatIds())} == {
        0: CLASS_NAMES[0], 1: CLASS_NAMES[1], 2: CLASS_NAMES[2], 3: CLASS_NAMES[3]}


def test_empty_results_give_a_valid_empty_file(tmp_path):
    from pycocotools.coco import COCO

    export_results(write_results(tmp_path, []), tmp_path, ["coco"], CLASS_NAMES)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "coco" / "instances.json"))
    assert gt.getImgIds() == [] and gt.getAnnIds() == [] and len(gt.getCatIds()) == 4
    assert json.loads((tmp_path / "coco" / "detections.json").read_text()) == []


def test_format_names_are_checked():
    assert parse_formats("jsonl") == []
    assert parse_formats(["VOC", "coco", "voc"]) == ["voc", "coco"]
    with pytest.raises(ConfigError, match=r"--format 'cocoa'"):
        parse_formats("coco,cocoa")
