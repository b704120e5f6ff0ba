"""The compiled (numba) engine gives the NumPy/OpenCV engine's counts; when each one is used."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from camloc.errors import MetricError
from camloc.metrics import LocalizationAccumulator, PxAPAccumulator, _jit


@pytest.fixture
def kernels():
    k = _jit.kernels()
    if k is None:
        pytest.skip("numba is not installed or CAMLOC_NO_NUMBA is set")
    return k


def _maps(rng, mh, n, h, w):
    """Smooth maps, pure noise, coarse plateaus (many ties) and two equal blobs (equal areas:
    the levels the compiled engine hands to OpenCV)."""
    out = list(mh.smooth_maps(rng, n, h, w).astype(np.float64))
    out.append(rng.random((h, w)))
    out.append(np.round(rng.random((h, w)) * 4) / 4)
    twin = np.zeros((h, w))
    twin[1:4, 1:4] = 1.0
    twin[h - 4:h - 1, w - 4:w - 1] = 1.0
    out.append(twin)
    return np.stack(out)


def _loc(maps, gts, interval, engine, top1, top5):
    acc = LocalizationAccumulator(interval=interval, engine=engine)
    for s in range(0, len(maps), 5):
        acc.update(maps[s:s + 5], gts[s:s + 5], top1[s:s + 5], top5[s:s + 5],
                   image_ids=[f"m{i}" for i in range(s, min(s + 5, len(maps)))])
    return acc


@pytest.mark.parametrize("interval", [0.01, 0.001])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulator_counts_equal(kernels, mh, interval, dtype):
    rng = np.random.default_rng(7)
    for h, w in ((9, 9), (23, 31), (40, 17)):
        maps = _maps(rng, mh, 12, h, w).astype(dtype)
        gts = [mh.random_gt(rng, h, w) for _ in maps]
        top1 = rng.random(len(maps)) < 0.6
        top5 = top1 | (rng.random(len(maps)) < 0.5)
        a = _loc(maps, gts, interval, "numpy", top1, top5)
        b = _loc(maps, gts, interval, "numba", top1, top5)
        for name in ("v1_correct", "v2_correct", "top1_correct", "top5_correct"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert a.per_image == b.per_image
        assert a.compute() == b.compute()


def test_equal_areas_go_to_opencv(kernels, mh):
    """Two blobs of equal area: OpenCV's contour order picks the V1 box; the compiled engine flags
    those levels and traces them, so the per-image box is OpenCV's."""
    m = np.zeros((12, 12))
    m[1:4, 1:4] = 1.0
    m[7:10, 6:9] = 1.0
    u8 = (m * 255).astype(np.uint8)
    gt = np.array([[6, 7, 9, 10]])
    b1, i1, v2, fb = kernels["level_outcomes"](u8, np.array([0, 100], np.int64), gt,
                                               np.array([0.5]), True, _jit.workspace(12, 12))
    assert fb.tolist() == [True, True]
    ref = mh.ref_boxes(m, 0.5)
    for eng in ("numpy", "numba"):
        acc = LocalizationAccumulator(interval=0.5, fixed_threshold=0.5, engine=eng)
        acc.update(m[None], [gt])
        assert acc.per_image[0]["box"] == ref[0]
        assert acc.per_image[0]["iou"] == max(mh.ref_iou(ref[0], g) for g in gt)


@pytest.mark.parametrize("interval", [0.01, 0.001, 0.3])
def test_pxap_histograms_equal(kernels, interval):
    rng = np.random.default_rng(3)
    edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
    for dtype in (np.float32, np.float64):
        maps = rng.random((5, 17, 13)).astype(dtype)
        on_edges = edges[:-3].astype(dtype)  # values exactly on (and just below) the bin edges
        maps[0].flat[:min(on_edges.size, 221)] = on_edges[:221]
        maps[1].flat[:min(on_edges.size, 221)] = np.nextafter(on_edges, dtype(-1)).clip(0)[:221]
        maps[2] = 1.0
        masks = rng.choice(np.array([0, 1, 255], np.uint8), maps.shape)
        a, b = PxAPAccumulator(interval, engine="numpy"), PxAPAccumulator(interval, engine="numba")
        a.update(maps, masks)
        b.update(maps, masks)
        np.testing.assert_array_equal(a.gt_true_hist, b.gt_true_hist)
        np.testing.assert_array_equal(a.gt_false_hist, b.gt_false_hist)


def test_engine_choice(monkeypatch, kernels):
    state = dict(_jit._STATE, ready=False, broken=False, checked_warm=None, numpy_s=0.0)
    monkeypatch.setattr(_jit, "_STATE", state)
    monkeypatch.delenv("CAMLOC_NUMBA", raising=False)
    monkeypatch.setenv("CAMLOC_NO_NUMBA", "1")
    assert _jit.engine(10**12) is None and _jit.kernels() is None
    with pytest.raises(MetricError, match="numba"):
        LocalizationAccumulator(engine="numba").update(np.zeros((1, 4, 4)), [np.array([0, 0, 1, 1])])
    monkeypatch.delenv("CAMLOC_NO_NUMBA")
    # a small job keeps the NumPy engine (no import, no compilation)
    assert _jit.engine(1000) is None and not state["ready"]
    # a job that pays for compiling gets the kernels, compiled once for every caller
    assert _jit.engine(10**12) is not None and state["ready"]
    assert _jit.engine(0) is not None
    with pytest.raises(MetricError, match="engine"):
        LocalizationAccumulator(engine="fast")


def test_broken_compiled_engine_falls_back(monkeypatch, kernels):
    state = dict(_jit._STATE, ready=False, broken=False, checked_warm=None, numpy_s=0.0)
    monkeypatch.setattr(_jit, "_STATE", state)
    monkeypatch.setenv("CAMLOC_NUMBA", "1")

    def boom(k):
        raise RuntimeError("corrupt cache")

    monkeypatch.setattr(_jit, "_warm_up", boom)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _jit.engine(10**12) is None
    assert any("NumPy engine" in str(w.message) for w in caught)
    acc = LocalizationAccumulator(interval=0.1)  # "auto": scores with the NumPy engine
    acc.update(np.ones((1, 4, 4)), [np.array([0, 0, 3, 3])])
    assert acc.compute()["maxboxacc_v1"]["value"] == 100.0
