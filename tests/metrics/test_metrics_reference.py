"""The fast accumulator equals the straightforward per-threshold loop on random structured maps."""

from __future__ import annotations

import numpy as np
import pytest

from camloc.metrics import LocalizationAccumulator
from camloc.metrics._levels import contour_boxes_at_level, iou_matrix, level_outcomes


@pytest.fixture(params=["numpy", "numba"])
def engine(request):
    """Both engines: the NumPy/OpenCV reference and the compiled one (skipped without numba)."""
    if request.param == "numba":
        from camloc.metrics import _jit

        if _jit.kernels() is None:
            pytest.skip("numba is not installed or CAMLOC_NO_NUMBA is set")
    return request.param


def _check(mh, maps, gts, interval, rng, engine="auto"):
    n = len(maps)
    top1 = rng.random(n) < 0.7
    top5 = top1 | (rng.random(n) < 0.5)
    acc = LocalizationAccumulator(interval=interval, fixed_threshold=0.2, engine=engine)
    for s in range(0, n, 7):  # several batches
        acc.update(maps[s:s + 7], gts[s:s + 7], top1[s:s + 7], top5[s:s + 7])
    ref = mh.ref_scores(maps, gts, interval, top1=top1, top5=top5, fixed_index=acc._fixed_index)
    np.testing.assert_array_equal(acc.v1_correct, ref["v1"])
    np.testing.assert_array_equal(acc.v2_correct, ref["v2"])
    np.testing.assert_array_equal(acc.top1_correct, ref["top1"])
    np.testing.assert_array_equal(acc.top5_correct, ref["top5"])
    recs = acc.per_image
    for r, (i1, b1) in zip(recs, ref["fixed"]):
        assert r["iou"] == i1 and r["box"] == list(b1)


def test_equal_to_reference_interval_001(rng, mh, engine):
    maps, gts = [], []
    for _ in range(12):
        h, w = int(rng.integers(12, 48)), int(rng.integers(12, 48))
        m = mh.smooth_maps(rng, 20, h, w)
        for x in m:
            maps.append(x)
            gts.append(mh.random_gt(rng, h, w))
    # maps of different sizes go in separate accumulators' batches of equal size
    for s in range(0, len(maps), 20):
        _check(mh, np.stack(maps[s:s + 20]), gts[s:s + 20], 0.01, rng, engine)


def test_equal_to_reference_interval_0001(rng, mh, engine):
    for _ in range(4):
        h, w = int(rng.integers(12, 40)), int(rng.integers(12, 40))
        maps = mh.smooth_maps(rng, 8, h, w)
        _check(mh, maps, [mh.random_gt(rng, h, w) for _ in maps], 0.001, rng, engine)


@pytest.mark.parametrize("seed", [0, 1])
def test_engine_every_level_including_noise(seed, mh, engine):
    """Every level 0..255 of smooth and pure-noise maps: V1 box, V1 IoU and best V2 IoU agree."""
    rng = np.random.default_rng(seed)
    for it in range(40):
        h, w = int(rng.integers(4, 40)), int(rng.integers(4, 40))
        if it % 3 == 2:
            u8 = (rng.random((h, w)) * rng.integers(1, 256)).astype(np.uint8)
        else:
            u8 = (mh.smooth_maps(rng, 1, h, w)[0].astype(np.float64) * 255).astype(np.uint8)
        gt = mh.random_gt(rng, h, w)
        levels = np.arange(256)
        b1, i1, v2 = level_outcomes(u8, levels, gt, engine=engine)
        for L in levels:
            rb, allb = contour_boxes_at_level(u8, int(L))
            assert b1[L].tolist() == rb.tolist()
            assert i1[L] == iou_matrix(rb[None], gt).max()
            assert v2[L] == iou_matrix(allb, gt).max()


@pytest.mark.parametrize("max_traced", [0, 1000])
def test_engine_hole_paths_and_threshold_mode(monkeypatch, mh, max_traced, engine):
    """Holes via the background tree (0) or per-level tracing (1000, NumPy engine); threshold mode
    keeps flags."""
    import camloc.metrics._levels as levels_module

    monkeypatch.setattr(levels_module, "_MAX_TRACED_HOLE_LEVELS", max_traced)
    rng = np.random.default_rng(99)
    thr = np.array([0.3, 0.5, 0.7])
    for _ in range(12):
        h, w = int(rng.integers(16, 48)), int(rng.integers(16, 48))
        u8 = (mh.smooth_maps(rng, 1, h, w)[0].astype(np.float64) * 255).astype(np.uint8)
        gt = mh.random_gt(rng, h, w)
        levels = np.arange(0, 256, 3)
        _, _, exact = level_outcomes(u8, levels, gt, engine=engine)
        _, _, flag_eq = level_outcomes(u8, levels, gt, thr, engine=engine)
        for j, L in enumerate(levels):
            ref = iou_matrix(contour_boxes_at_level(u8, int(L))[1], gt).max()
            assert exact[j] == ref
            assert ((flag_eq[j] >= thr) == (ref >= thr)).all()


def test_engine_thin_and_large_maps(mh, engine):
    rng = np.random.default_rng(5)
    cases = [(1, 1), (1, 9), (9, 1), (2, 2), (3, 40)]
    for h, w in cases:
        u8 = (rng.random((h, w)) * 255).astype(np.uint8)
        gt = np.array([[0, 0, w - 1, h - 1]])
        b1, _, v2 = level_outcomes(u8, np.arange(256), gt, engine=engine)
        for L in range(256):
            rb, allb = contour_boxes_at_level(u8, L)
            assert b1[L].tolist() == rb.tolist() and v2[L] == iou_matrix(allb, gt).max()
    # more than 2**18 pixels (the window sums need wide packing)
    big = (mh.smooth_maps(rng, 1, 520, 530)[0].astype(np.float64) * 255).astype(np.uint8)
    gt = np.array([[100, 120, 400, 380]])
    levels = np.array([0, 37, 90, 128, 200, 250])
    b1, i1, v2 = level_outcomes(big, levels, gt, engine=engine)
    for j, L in enumerate(levels):
        rb, allb = contour_boxes_at_level(big, int(L))
        assert b1[j].tolist() == rb.tolist() and v2[j] == iou_matrix(allb, gt).max()
