"""Scoring box files against a dataset (camloc.evaluation.boxes, `camloc score --boxes`):
hand-computed IoUs, the matching rule, top vs any box, COCO and JSONL alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camloc.data.sample import Dataset, Sample
from camloc.errors import ConfigError
from camloc.evaluation.boxes import score_boxes
from camloc.export import export_results

from .conftest import CLASS_NAMES, write_results


def rec(path: Path, boxes: dict[int, list], probs: dict[int, float] | None = None, **kw) -> dict:
    ids = list(boxes)
    r = {"path": str(path), "width": 100, "height": 100, "class_ids": ids,
         "class_names": [CLASS_NAMES[c] for c in ids],
         "probs": [(probs or {}).get(c, 0.5) for c in ids],
         "boxes": [boxes[c][0] for c in ids], **kw}
    if any(len(b) > 1 for b in boxes.values()):
        r["component_boxes"] = [boxes[c] for c in ids]
    return r


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    d = tmp_path / "ds"
    gt = [[0, 0, 10, 10]]
    samples = [Sample(f"val/{n}.jpg", d / "val" / f"{n}.jpg", label, boxes, (100, 100))
               for n, label, boxes in [("a", 1, gt), ("b", 2, gt), ("c", 3, gt), ("d", 0, gt),
                                       ("e", 1, [[50, 50, 60, 60], [0, 0, 10, 10]]),
                                       ("nobox", 1, [])]]
    return Dataset("toy", d, "csv", None, samples, CLASS_NAMES)


@pytest.fixture
def box_records(tmp_path: Path, dataset: Dataset) -> list[dict]:
    root = dataset.root / "val"
    return [
        rec(root / "a.jpg", {1: [[0, 0, 10, 5]]}),                  # IoU 0.5
        rec(root / "b.jpg", {2: [[5, 0, 15, 10]], 0: [[0, 0, 10, 10]]}),  # 50/150, other class
        # --multi: the largest (first) component is poor, the second exact
        rec(root / "c.jpg", {3: [[0, 0, 30, 30], [0, 0, 10, 10]]}),
        # d: no box of its class
        rec(root / "d.jpg", {2: [[0, 0, 10, 10]]}),
        # e: matched by image id only; two GT boxes, the best one counts
        rec(tmp_path / "elsewhere" / "e.jpg", {1: [[50, 50, 60, 58]]}, image_id="val/e.jpg"),
        rec(tmp_path / "stranger.jpg", {1: [[0, 0, 1, 1]]}),       # in no dataset
    ]


def expected_top() -> list[float]:
    return [0.5, 50 / 150, 100 / 900, 0.0, 0.8]


def test_jsonl_hand_computed(tmp_path, dataset, box_records):
    r = score_boxes(write_results(tmp_path, box_records), dataset)
    assert r["format"] == "jsonl"
    per = r["per_image"]
    assert [p["image_id"] for p in per] == ["val/a.jpg", "val/b.jpg", "val/c.jpg", "val/d.jpg",
                                            "val/e.jpg"]
    assert [p["iou_top"] for p in per] == pytest.approx(expected_top(), abs=1e-6)
    assert [p["iou_any"] for p in per] == pytest.approx([0.5, 50 / 150, 1.0, 0.0, 0.8], abs=1e-6)
    assert r["counts"] == {"scored": 5, "matched": 5, "missing": 0, "no_box_for_label": 1,
                           "unmatched_in_file": 1, "duplicates_in_file": 0, "no_label": 0,
                           "no_gt_box": 1}
    assert r["top"] == {"0.3": 60.0, "0.5": 40.0, "0.7": 20.0}
    assert r["any"] == {"0.3": 80.0, "0.5": 60.0, "0.7": 40.0}
    assert r["mean_iou"]["top"] == pytest.approx(sum(expected_top()) / 5, abs=1e-6)


def test_coco_file_scores_the_same(tmp_path, dataset, box_records):
    results = write_results(tmp_path, box_records)
    export_results(results, tmp_path, ["coco"], CLASS_NAMES)
    a = score_boxes(results, dataset)
    b = score_boxes(tmp_path / "coco" / "instances.json", dataset)
    assert b["format"] == "coco"
    assert b["per_image"] == a["per_image"] and b["top"] == a["top"] and b["any"] == a["any"]


def test_highest_score_wins_in_a_foreign_coco_file(tmp_path, dataset):
    """A COCO file camloc did not write: category ids are class ids, file names relative ids,
    the highest-scoring box of the class is the 'top' one whatever its place."""
    coco = {"images": [{"id": 7, "file_name": "val/a.jpg", "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "goldfish"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 30, 30],
                             "score": 0.2},
                            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10],
                             "score": 0.9}]}
    p = tmp_path / "foreign.json"
    p.write_text(json.dumps(coco))
    r = score_boxes(p, dataset)
    assert r["per_image"][0]["iou_top"] == 1.0
    assert r["counts"]["missing"] == 4 and r["counts"]["matched"] == 1
    assert r["top"]["0.5"] == 20.0  # missing images count as misses


def test_refusals(tmp_path, dataset):
    res = tmp_path / "dets.json"
    res.write_text("[]")
    with pytest.raises(ConfigError, match="results list"):
        score_boxes(res, dataset)
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    with pytest.raises(ConfigError, match="neither"):
        score_boxes(junk, dataset)
    unlabelled = Dataset("u", dataset.root, "csv", None,
                         [Sample("x.jpg", dataset.root / "x.jpg", None, [], None)], CLASS_NAMES)
    with pytest.raises(ConfigError, match="no image with both"):
        score_boxes(write_results(tmp_path, []), unlabelled)
