"""Shared helpers for the metrics tests: random structured maps and a straightforward reference."""

from __future__ import annotations

from types import SimpleNamespace  # noqa: F401

import cv2
import numpy as np
import pytest


def smooth_maps(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Random smooth maps in [0, 1]: k x k noise upsampled bicubically, some with several blobs."""
    out = np.empty((n, h, w), np.float32)
    for i in range(n):
        k = int(rng.integers(2, 10))
        small = rng.random((k, k)).astype(np.float32)
        if i % 3 == 0:  # one dominant blob
            yy, xx = np.mgrid[0:k, 0:k]
            cy, cx = rng.uniform(0, k - 1, 2)
            small = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(0.5, 4)) + 0.2 * small
        m = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        m = m.astype(np.float64)
        m -= m.min()
        m /= max(m.max(), 1e-12)
        out[i] = m
    return out


def random_gt(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    nb = int(rng.integers(1, 4))
    x0 = rng.integers(0, w, nb)
    y0 = rng.integers(0, h, nb)
    x1 = np.minimum(w - 1, x0 + rng.integers(0, w, nb))
    y1 = np.minimum(h - 1, y0 + rng.integers(0, h, nb))
    return np.stack([x0, y0, x1, y1], 1).astype(np.int64)


def ref_iou(a, b) -> float:
    """Plain-Python IoU with the +1 convention."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    den = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return 0.0 if den <= 0 else inter / den


def ref_boxes(scoremap: np.ndarray, tau: float):
    """wsolevaluation's scoremap2bbox, written out: (v1 box, all boxes)."""
    h, w = scoremap.shape
    img = np.expand_dims((scoremap.astype(np.float64) * 255).astype(np.uint8), 2)
    _, binary = cv2.threshold(img, int(tau * np.max(img)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return [0, 0, 0, 0], [[0, 0, 0, 0]]
    boxes = []
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        boxes.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
    best = max(range(len(contours)), key=lambda i: cv2.contourArea(contours[i]))
    return boxes[best], boxes


def ref_scores(maps, gts, interval, ious=(30, 50, 70), top1=None, top5=None, fixed_index=None):
    """Straightforward per-image, per-threshold evaluation (counts per threshold)."""
    thr = np.arange(0, 1, interval)
    v1 = np.zeros(len(thr), np.int64)
    v2 = np.zeros((len(ious), len(thr)), np.int64)
    t1 = np.zeros(len(thr), np.int64)
    t5 = np.zeros(len(thr), np.int64)
    fixed = []
    for i, (m, g) in enumerate(zip(maps, gts)):
        g = [list(map(int, b)) for b in g]
        for k, tau in enumerate(thr):
            b1, allb = ref_boxes(m, tau)
            i1 = max(ref_iou(b1, gb) for gb in g)
            i2 = max(ref_iou(b, gb) for b in allb for gb in g)
            ok = i1 >= 0.5
            v1[k] += ok
            for j, d in enumerate(ious):
                v2[j, k] += i2 >= d / 100
            if top1 is not None and top1[i]:
                t1[k] += ok
            if top5 is not None and top5[i]:
                t5[k] += ok
            if k == fixed_index:
                fixed.append((i1, b1))
    return {"v1": v1, "v2": v2, "top1": t1, "top5": t5, "fixed": fixed}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def mh():
    """The helpers above (tests run with --import-mode=importlib, so they come as a fixture)."""

    return SimpleNamespace(smooth_maps=smooth_maps, random_gt=random_gt, ref_iou=ref_iou,
                           ref_boxes=ref_boxes, ref_scores=ref_scores)
