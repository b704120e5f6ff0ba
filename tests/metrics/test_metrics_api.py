"""Merge, state_dict, calibration, PxAP / classification references and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from camloc.errors import MetricError
from camloc.metrics import (ClassificationAccumulator, LocalizationAccumulator, PxAPAccumulator,
                            cam_thresholds, rescale_gt_boxes)


@pytest.fixture
def data(rng, mh):
    maps = mh.smooth_maps(rng, 30, 24, 28)
    gts = [mh.random_gt(rng, 24, 28) for _ in maps]
    top1 = rng.random(30) < 0.6
    masks = (maps > 0.5).astype(np.uint8)
    masks[:, :3, :3] = 255
    return maps, gts, top1, masks


def test_merge_equals_single_pass_and_state_dict_round_trip(data):
    maps, gts, top1, _ = data
    one = LocalizationAccumulator()
    one.update(maps, gts, top1, top1, image_ids=[f"im{i}" for i in range(30)])
    shards = []
    for s in (slice(0, 11), slice(11, 12), slice(12, 30)):
        a = LocalizationAccumulator()
        a.update(maps[s], gts[s], top1[s], top1[s], image_ids=[f"im{i}" for i in range(30)][s])
        shards.append(LocalizationAccumulator.from_state_dict(a.state_dict()))
    merged = shards[0].merge(shards[1]).merge(shards[2])
    assert merged.compute() == one.compute()
    assert merged.per_image == one.per_image
    json.dumps(one.compute(threshold=0.3))  # JSON-serialisable
    sd = one.state_dict()
    assert all(isinstance(v, (np.ndarray, int, float, bool)) for v in sd.values())


def test_calibration_applies_other_split_threshold(data):
    maps, gts, _, _ = data
    val, test = LocalizationAccumulator(), LocalizationAccumulator()
    val.update(maps[:15], gts[:15])
    test.update(maps[15:], gts[15:])
    tau = val.compute()["maxboxacc_v1"]["threshold"]
    cal = test.compute(threshold=tau)["calibrated"]
    k = int(round(tau / 0.01))
    assert cal["threshold"] == tau
    assert cal["boxacc_v1"] == test.compute()["curves"]["v1"]["50"][k]
    assert cal["top1_loc"] is None  # no top-1 information was given
    assert cal["boxacc_v1"] <= test.compute()["maxboxacc_v1"]["value"]


def test_pxap_matches_mask_evaluator_formula(data):
    maps, _, _, masks = data
    acc = PxAPAccumulator(0.01)
    for s in range(0, 30, 10):
        acc.update(maps[s:s + 10], masks[s:s + 10])
    # wsolevaluation's MaskEvaluator, written out
    edges = np.append(np.arange(0, 1, 0.01), [1.0, 2.0, 3.0])
    ht = np.zeros(len(edges) - 1)
    hf = np.zeros(len(edges) - 1)
    for m, g in zip(maps.astype(np.float64), masks):
        ht += np.histogram(m[g == 1], bins=edges)[0]
        hf += np.histogram(m[g == 0], bins=edges)[0]
    tp = ht[::-1].cumsum()
    fn = ht.sum() - tp
    fp = hf[::-1].cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        prec, rec = tp / (tp + fp), tp / (tp + fn)
    auc = (prec[1:] * np.diff(rec))[((tp + fp) != 0)[1:]].sum() * 100
    r = acc.compute()
    assert r["pxap"] == auc
    best = max(r["curves"]["iou"])
    assert r["piou"] == best and r["curves"]["iou"].index(best) == round(r["piou_threshold"] / 0.01)
    at = acc.evaluate_at(r["piou_threshold"])
    assert abs(at["iou"] - r["piou"]) < 1e-9
    other = PxAPAccumulator.from_state_dict(acc.state_dict())
    assert other.merge(PxAPAccumulator(0.01)).compute() == r


def test_classification():
    logits = np.array([[0.1, 0.5, 0.5, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0], [0, 1, 2, 3, 4, 5, 6]], float)
    acc = ClassificationAccumulator()
    t1, t5 = acc.update(logits, np.array([2, 0, 0]))
    assert t1.tolist() == [False, True, False]  # tie between 1 and 2 -> lower index (1)
    assert t5.tolist() == [True, True, False]
    ids = ClassificationAccumulator()
    ids.update(np.array([[1, 2, 3, 4, 5], [0, 1, 2, 3, 4]]), np.array([5, 0]))
    merged = ClassificationAccumulator.from_state_dict(acc.state_dict()).merge(ids)
    assert merged.compute() == {"top1": 40.0, "top5": 80.0, "count": 5}


@pytest.mark.parametrize("kwargs, name", [
    ({"interval": 0.0}, "interval"), ({"interval": 1.0}, "interval"), ({"interval": -0.1}, "interval"),
    ({"interval": "x"}, "interval"), ({"fixed_threshold": 0.205}, "fixed_threshold"),
    ({"fixed_threshold": 1.0}, "fixed_threshold"), ({"iou_thresholds": (0, 50)}, "iou_thresholds"),
    ({"iou_thresholds": (50.5,)}, "iou_thresholds"),
])
def test_bad_settings(kwargs, name):
    with pytest.raises(MetricError, match=name):
        LocalizationAccumulator(**kwargs)


def test_fixed_threshold_resolved_by_grid_index():
    acc = LocalizationAccumulator(interval=0.001, fixed_threshold=0.2)
    assert acc._fixed_index == 200 and acc.fixed_threshold == cam_thresholds(0.001)[200]
    assert LocalizationAccumulator(interval=0.1, fixed_threshold=0.3)._fixed_index == 3


def test_bad_inputs(data):
    maps, gts, _, masks = data
    acc = LocalizationAccumulator()
    cases = [
        (lambda: acc.update(maps[0], gts[:1]), "scoremaps"),
        (lambda: acc.update(maps[:2], gts[:1]), "gt_boxes"),
        (lambda: acc.update(maps[:1], [np.array([[1, 2, 3]])]), r"gt_boxes\[0\]"),
        (lambda: acc.update(maps[:1], [np.array([[5, 2, 3, 4]])]), r"gt_boxes\[0\]"),
        (lambda: acc.update(maps[:1], [np.array([[-1, 2, 3, 4]])]), r"gt_boxes\[0\]"),
        (lambda: acc.update(maps[:1], [np.array([[1.5, 2, 3, 4]])]), "rescale_gt_boxes"),
        (lambda: acc.update(maps[:1] * 2, gts[:1]), "normalize_minmax"),
        (lambda: acc.update(np.full((1, 4, 4), np.nan), gts[:1]), "NaN"),
        (lambda: acc.update(maps[:2], gts[:2], top1_correct=np.ones(3, bool)), "top1_correct"),
        (lambda: acc.update(maps[:2], gts[:2], image_ids=["a"]), "image_ids"),
        (lambda: acc.compute(), "no images"),
        (lambda: acc.merge(LocalizationAccumulator(interval=0.001)), "different settings"),
        (lambda: PxAPAccumulator().update(maps[:2], masks[:1]), "gt_masks"),
        (lambda: PxAPAccumulator().update(maps[:1], masks[:1] * 2), "gt_masks"),
        (lambda: ClassificationAccumulator().update(np.zeros((2, 3)), np.array([0, 3])), "labels"),
        (lambda: rescale_gt_boxes([[1, 2, 3, 4]], (0, 10), 224), "image_size"),
        (lambda: LocalizationAccumulator.from_state_dict({"interval": 0.01}), "missing"),
    ]
    for fn, pattern in cases:
        with pytest.raises(MetricError, match=pattern):
            fn()


def test_default_ids_survive_round_trip_and_merge(data):
    maps, gts, _, _ = data
    one = LocalizationAccumulator(interval=0.1)
    one.update(maps, gts)
    a, b = LocalizationAccumulator(interval=0.1), LocalizationAccumulator(interval=0.1)
    a.update(maps[:10], gts[:10])
    b.update(maps[10:], gts[10:])
    merged = LocalizationAccumulator.from_state_dict(a.state_dict()).merge(
        LocalizationAccumulator.from_state_dict(b.state_dict()))
    assert merged.per_image == one.per_image
    assert [r["image_id"] for r in one.per_image[:3]] == ["0", "1", "2"]
    none = LocalizationAccumulator(keep_per_image=False)
    none.update(maps, gts)
    assert none.per_image == [] and none.compute()["count"] == 30
