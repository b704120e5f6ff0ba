"""Hand-built maps with known answers."""

from __future__ import annotations

import cv2
import numpy as np

from camloc.metrics import (LocalizationAccumulator, PxAPAccumulator, boxes_from_scoremap, box_iou,
                            cam_thresholds, normalize_minmax, rescale_gt_boxes)


def _acc(maps, gts, **kw):
    acc = LocalizationAccumulator(**kw)
    acc.update(np.asarray(maps, np.float64), [np.asarray(g) for g in gts])
    return acc.compute(), acc


def test_multiple_gt_boxes_best_one_counts():
    m = np.zeros((20, 20))
    m[10:15, 12:18] = 1.0
    # the blob's box is [12, 10, 18, 15] (x1 = max x + 1, y1 = max y + 1)
    r, _ = _acc([m], [[[0, 0, 3, 3], [12, 10, 18, 15]]], interval=0.1)
    assert r["maxboxacc_v1"]["value"] == 100.0
    assert r["gt_known_loc"]["at_fixed"] == 100.0
    r2, _ = _acc([m], [[[0, 0, 3, 3]]], interval=0.1)
    assert r2["maxboxacc_v1"]["value"] == 0.0


def test_hole_box_counts_for_v2_only():
    m = np.zeros((12, 12))
    m[2:10, 2:10] = 1.0
    m[4:8, 4:8] = 0.0  # a hole: contour on the ring pixels around it -> box [3, 3, 9, 9]
    boxes = boxes_from_scoremap(m, [0.5], multi_contour=True)[0]
    assert sorted(boxes.tolist()) == [[2, 2, 10, 10], [3, 3, 9, 9]]
    r, _ = _acc([m], [[[3, 3, 9, 9]]], interval=0.5, fixed_threshold=0.0)
    # V1 keeps the outer box: IoU 49/81 >= 0.5 but < 0.7; V2 also has the hole box (IoU 1)
    assert r["maxboxacc_v1"]["value"] == 100.0
    assert r["maxboxacc_v2"]["per_iou"]["70"]["value"] == 100.0
    assert box_iou([[2, 2, 10, 10]], [[3, 3, 9, 9]])[0, 0] == 49 / 81


def test_constant_and_nan_maps_become_empty():
    const = normalize_minmax(np.full((8, 8), 3.0))
    nan = normalize_minmax(np.where(np.eye(8) > 0, np.nan, 1.0))
    assert not const.any() and not nan.any()
    # an empty map gives the box [0, 0, 0, 0] at every threshold: IoU 1 with a GT box at the origin
    r, acc = _acc([const, nan], [[[0, 0, 0, 0]], [[0, 0, 1, 1]]], interval=0.01)
    assert r["maxboxacc_v1"]["value"] == 50.0
    assert acc.per_image[0]["box"] == [0, 0, 0, 0] and acc.per_image[1]["iou"] == 0.25


def test_single_bright_pixel_and_tiny_maps():
    m = np.zeros((10, 10))
    m[4, 6] = 1.0
    assert boxes_from_scoremap(m, [0.0, 0.99])[1].tolist() == [[6, 4, 7, 5]]
    tiny = np.full((10, 10), 0.001)  # quantises to all zeros: nothing is foreground anywhere
    assert boxes_from_scoremap(tiny, [0.0])[0].tolist() == [[0, 0, 0, 0]]
    r, _ = _acc([m], [[[6, 4, 7, 5]]], interval=0.01)
    assert r["maxboxacc_v1"] == {"value": 100.0, "threshold": 0.0}


def test_level_structure_thresholds_share_integer_levels():
    m = np.linspace(0, 1, 64).reshape(8, 8)
    # u8 of pixel i is int(i / 63 * 255); box at tau = [0, first row with u8 > int(255 tau), 7, 7]
    r001, _ = _acc([m], [[[0, 6, 7, 7]]], interval=0.01)
    r0001, _ = _acc([m], [[[0, 6, 7, 7]]], interval=0.001)
    assert r001["maxboxacc_v1"]["value"] == r0001["maxboxacc_v1"]["value"] == 100.0
    # rows >= 4 only (IoU 16/32) from u8 > 125: pixel 31 has u8 125, so tau with int(255 tau) >= 125
    assert r001["maxboxacc_v1"]["threshold"] == 0.5  # int(0.49 * 255) = 124 keeps pixel 31 (row 3)
    assert r0001["maxboxacc_v1"]["threshold"] == 0.491  # int(0.491 * 255) = 125


def test_tie_in_contour_area_follows_opencv_order():
    m = np.zeros((16, 16))
    m[2:5, 2:5] = 1.0
    m[10:13, 9:12] = 1.0  # same area
    b = np.expand_dims((m * 255).astype(np.uint8), 2)
    cs = cv2.findContours(b, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    x, y, w, h = cv2.boundingRect(max(cs, key=cv2.contourArea))
    first = [x, y, min(x + w, 15), min(y + h, 15)]
    other = [9, 10, 12, 13] if first[0] == 2 else [2, 2, 5, 5]
    assert boxes_from_scoremap(m, [0.5])[0].tolist() == [first]
    r, _ = _acc([m, m], [[first], [other]], interval=0.5, fixed_threshold=0.5)
    assert r["gt_known_loc"]["at_fixed"] == 50.0
    assert r["maxboxacc_v2"]["per_iou"]["50"]["value"] == 100.0


def test_top1_top5_loc_and_fixed_threshold():
    m = np.zeros((10, 10))
    m[2:6, 2:6] = 1.0
    m[6:9, 6:9] = 0.1  # faint blob (u8 25): in the foreground only for tau < 0.1
    acc = LocalizationAccumulator(interval=0.01, fixed_threshold=0.2)
    gt = [np.array([[2, 2, 6, 6]])] * 3
    acc.update(np.stack([m, m, m]), gt, top1_correct=np.array([True, False, False]),
               top5_correct=np.array([True, True, False]))
    r = acc.compute()
    assert r["gt_known_loc"]["at_fixed"] == 100.0
    assert r["top1_loc"]["at_fixed"] == 100 / 3
    assert r["top5_loc"]["at_fixed"] == 200 / 3
    assert r["top1_loc"]["best_threshold"] == 0.1  # first threshold where the faint blob is gone
    assert r["curves"]["v1"]["50"][0] == 0.0  # tau=0: one box [2,2,9,9] covers both, IoU 25/64


def test_rescale_and_thresholds():
    assert cam_thresholds(0.001).shape == (1000,)
    assert rescale_gt_boxes([[0, 0, 499, 374]], (500, 375), (224, 224)).tolist() == [[0, 0, 223, 223]]
    # multiply first, then divide, then truncate (float64), as resize_bbox
    assert rescale_gt_boxes([[10.5, 1, 20, 2]], (3, 3), 7).tolist() == [[24, 2, 46, 4]]


def test_pxap_known_answer():
    maps = np.array([[[0.9, 0.8, 0.3, 0.1]]])
    masks = np.array([[[1, 0, 1, 255]]], np.uint8)
    acc = PxAPAccumulator(interval=0.1)
    acc.update(maps, masks)
    r = acc.compute()
    # ranking 0.9 (fg), 0.8 (bg), 0.3 (fg): AP = 1*0.5 + (2/3)*0.5
    assert abs(r["pxap"] - 100 * (0.5 + (2 / 3) * 0.5)) < 1e-9
    assert abs(r["piou"] - 100 * 2 / 3) < 1e-9 and r["piou_threshold"] == 0.0
