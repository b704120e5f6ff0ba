"""Property-based tests: on any map, both engines give the counts of the straightforward loop.

The oracle is ``ref_scores`` in conftest.py: wsolevaluation's per-threshold loop written out
(``cv2.threshold`` + ``cv2.findContours`` per threshold, plain-Python IoU). Maps: smooth blobs,
pure noise, plateaus (few distinct values: ties), all-zero and constant maps, rectangles, values
exactly on the quantisation steps; sizes from 1 x 1 to 20 x 20, square or not; one to three GT
boxes, often touching the border.
"""

from __future__ import annotations

import bisect

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camloc.metrics import LocalizationAccumulator, PxAPAccumulator, _jit

FAMILIES = ("smooth", "noise", "plateau", "zero", "constant", "rects", "steps")
PROPS = settings(max_examples=150, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


def _engines() -> list[str]:
    return ["numpy", "numba"] if _jit.kernels() is not None else ["numpy"]


def make_map(family: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    if family == "smooth":
        k = int(rng.integers(2, 6))
        m = cv2.resize(rng.random((k, k)).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_CUBIC).astype(np.float64)
        m -= m.min()
        return m / m.max() if m.max() > 0 else m
    if family == "noise":
        return rng.random((h, w))
    if family == "plateau":
        return rng.integers(0, 4, (h, w)) / 3.0
    if family == "zero":
        return np.zeros((h, w))
    if family == "constant":
        return np.full((h, w), float(rng.random()))
    if family == "rects":
        m = np.zeros((h, w))
        for _ in range(int(rng.integers(1, 4))):
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            m[y0:y0 + int(rng.integers(1, h + 1)), x0:x0 + int(rng.integers(1, w + 1))] = rng.random()
        return m
    return rng.integers(0, 256, (h, w)) / 255.0  # "steps": exactly on the quantisation steps


def make_gt(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        x0 = 0 if rng.random() < 0.3 else int(rng.integers(0, w))
        y0 = 0 if rng.random() < 0.3 else int(rng.integers(0, h))
        x1 = w - 1 if rng.random() < 0.3 else int(rng.integers(x0, w))
        y1 = h - 1 if rng.random() < 0.3 else int(rng.integers(y0, h))
        boxes.append([x0, y0, x1, y1])
    return np.array(boxes, np.int64)


maps_and_boxes = st.builds(
    lambda family, h, w, n, seed: (family, h, w, n, seed),
    st.sampled_from(FAMILIES), st.integers(1, 20), st.integers(1, 20), st.integers(1, 4),
    st.integers(0, 2**32 - 1))


@pytest.mark.parametrize("engine", _engines())
@PROPS
@given(case=maps_and_boxes, interval=st.sampled_from([0.1, 0.05, 0.01]),
       fixed=st.integers(0, 4))
def test_localization_counts_equal_reference_loop(mh, engine, case, interval, fixed):
    family, h, w, n, seed = case
    rng = np.random.default_rng(seed)
    maps = np.stack([make_map(family, h, w, rng) for _ in range(n)])
    gts = [make_gt(h, w, rng) for _ in range(n)]
    top1 = rng.random(n) < 0.5
    top5 = top1 | (rng.random(n) < 0.5)
    tau = float(np.arange(0, 1, interval)[fixed])
    acc = LocalizationAccumulator(interval=interval, fixed_threshold=tau, engine=engine)
    acc.update(maps, gts, top1, top5)
    ref = mh.ref_scores(maps, gts, interval, top1=top1, top5=top5, fixed_index=acc._fixed_index)
    np.testing.assert_array_equal(acc.v1_correct, ref["v1"])
    np.testing.assert_array_equal(acc.v2_correct, ref["v2"])
    np.testing.assert_array_equal(acc.top1_correct, ref["top1"])
    np.testing.assert_array_equal(acc.top5_correct, ref["top5"])
    for rec, (iou, box) in zip(acc.per_image, ref["fixed"]):
        assert rec["iou"] == iou and rec["box"] == list(box)


@pytest.mark.parametrize("engine", _engines())
@PROPS
@given(case=maps_and_boxes, interval=st.sampled_from([0.3, 0.1, 0.01, 0.001]))
def test_pxap_histograms_equal_per_pixel_count(engine, case, interval):
    """Foreground / background histograms: pixel ``v`` counts in bin ``k`` when
    ``e_k <= v < e_{k+1}`` (edges: the thresholds, then 1, 2, 3), ignore pixels (255) not at all."""
    family, h, w, n, seed = case
    rng = np.random.default_rng(seed)
    maps = np.stack([make_map(family, h, w, rng) for _ in range(n)])
    masks = rng.choice(np.array([0, 1, 255], np.uint8), maps.shape)
    acc = PxAPAccumulator(interval, engine=engine)
    acc.update(maps, masks)
    edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
    edge_list = edges.tolist()
    want = {0: np.zeros(len(edges) - 1, np.int64), 1: np.zeros(len(edges) - 1, np.int64)}
    for v, g in zip(maps.ravel().tolist(), masks.ravel().tolist()):
        if g in want:
            want[g][bisect.bisect_right(edge_list, v) - 1] += 1
    np.testing.assert_array_equal(acc.gt_true_hist, want[1])
    np.testing.assert_array_equal(acc.gt_false_hist, want[0])
