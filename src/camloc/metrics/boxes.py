"""Score-map helpers with wsolevaluation's exact definitions (Choe et al., CVPR 2020).

Definitions (each matches clovaai/wsolevaluation bit for bit):

* **Normalisation** (:func:`normalize_minmax`, wsolevaluation's ``normalize_scoremap``): a map with a
  NaN anywhere, or a constant map, becomes all zeros; otherwise ``m - m.min()`` is divided by its
  maximum. The metrics never normalise implicitly: they reject maps outside ``[0, 1]``.
* **Quantisation** (:func:`quantize_scoremap`): ``u8 = (float64(map) * 255).astype(uint8)``
  (truncation). wsolevaluation works on float64 maps, so camloc casts to float64 first.
* **Thresholds** (:func:`cam_thresholds`): ``np.arange(0, 1, interval)``; interval 0.01 by default
  (0.001 in the paper's final protocol).
* **Foreground at threshold tau**: ``u8 > int(tau * max(u8))`` (``cv2.threshold`` THRESH_BINARY with
  the integer threshold computed in float64 as in the reference), so at most ``max(u8)`` distinct
  integer levels exist whatever the interval.
* **Boxes** (:func:`boxes_from_scoremap`): ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` of the
  binary image, outer *and* hole contours; ``cv2.boundingRect`` gives ``x, y, w, h`` and the box is
  ``x0 = x, y0 = y, x1 = min(x + w, W - 1), y1 = min(y + h, H - 1)``. V1 keeps only
  ``max(contours, key=cv2.contourArea)`` (first contour in OpenCV's order on ties), V2
  (``multi_contour``) keeps every contour. No contour -> the box ``[0, 0, 0, 0]``.
* **IoU** (:func:`box_iou`): inclusive corners, ``area = (x1 - x0 + 1) * (y1 - y0 + 1)``, intersection
  likewise clamped at 0; a non-positive union gives IoU 0.
* **GT boxes** (:func:`rescale_gt_boxes`): wsolevaluation's ``resize_bbox``:
  ``int(float(x0) * new_w / old_w)`` and so on, i.e. multiply first, then divide, then truncate.
  (wsolevaluation's own reader parses ``localization.txt`` with ``int()``, so files with decimal
  coordinates such as the camloc dev set are read as floats and go through the same formula.)

>>> import numpy as np
>>> m = np.zeros((5, 5)); m[1:4, 1:3] = 1.0
>>> boxes_from_scoremap(m, [0.5])[0].tolist()
[[1, 1, 3, 4]]
>>> box_iou([[0, 0, 9, 9]], [[0, 0, 4, 9]]).tolist()
[[0.5]]
>>> rescale_gt_boxes([[51.81, 61.29, 199.05, 214.74]], (227, 227), 224).tolist()
[[51, 60, 196, 211]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camloc.errors import MetricError
from camloc.metrics._levels import contour_boxes_at_level, iou_matrix

__all__ = [
    "normalize_minmax",
    "cam_thresholds",
    "quantize_scoremap",
    "threshold_levels",
    "rescale_gt_boxes",
    "boxes_from_scoremap",
    "box_iou",
    "check_scoremaps",
]


_MIN_INTERVAL = 0.0001


def normalize_minmax(scoremap: np.ndarray) -> np.ndarray:
    """Min-max normalise a map exactly like wsolevaluation's ``normalize_scoremap``.

    NaN anywhere -> zeros; ``min == max`` -> zeros; else ``(m - min) / max(m - min)``. Works on any
    shape (the whole array is one map), returns a new floating array (float64 stays float64, other
    inputs become float32) and never modifies the input.

    >>> normalize_minmax(np.array([[2.0, 4.0], [6.0, 6.0]])).tolist()
    [[0.0, 0.5], [1.0, 1.0]]
    >>> normalize_minmax(np.array([1.0, np.nan])).tolist()
    [0.0, 0.0]
    """
    a = np.asarray(scoremap)
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float32
    cam = np.array(a, dtype=dtype, copy=True)
    if cam.size == 0 or np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def cam_thresholds(interval: float = 0.01) -> np.ndarray:
    """The CAM threshold grid ``np.arange(0, 1, interval)`` (float64), as wsolevaluation builds it.

    Raises :class:`MetricError` unless ``0.0001 <= interval < 1`` (at most 10,000 thresholds: a
    map has at most 255 distinct levels, so a finer grid only costs memory and time).

    >>> cam_thresholds(0.25).tolist()
    [0.0, 0.25, 0.5, 0.75]
    """
    try:
        iv = float(interval)
    except (TypeError, ValueError):
        raise MetricError(f"interval must be a number in (0, 1), got {interval!r}") from None
    if not (_MIN_INTERVAL <= iv < 1.0):  # also refuses NaN
        raise MetricError(f"interval must be in [{_MIN_INTERVAL}, 1) (at most 10000 thresholds), "
                          f"got {interval!r}")
    return np.arange(0, 1, iv)


def check_scoremaps(scoremaps: object, name: str = "scoremaps") -> np.ndarray:
    """Validate a batch of score maps ``(N, H, W)`` in ``[0, 1]`` (returned as given, no copy)."""
    a = np.asarray(scoremaps)
    if a.ndim != 3 or a.shape[1] < 1 or a.shape[2] < 1:
        raise MetricError(f"{name} must have shape (N, H, W), got {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise MetricError(f"{name} must be a floating array, got dtype {a.dtype}")
    if a.size and np.isnan(a.min()):
        raise MetricError(f"{name} contain NaN; normalise with camloc.metrics.normalize_minmax first")
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise MetricError(f"{name} must lie in [0, 1] (min {a.min():g}, max {a.max():g}); "
                          "normalise with camloc.metrics.normalize_minmax first")
    return a


def quantize_scoremap(scoremap: np.ndarray) -> np.ndarray:
    """``(float64(map) * 255).astype(uint8)`` for one map ``(H, W)`` in ``[0, 1]`` (validated)."""
    a = check_scoremaps(np.asarray(scoremap)[None], "scoremap")[0]
    return (a.astype(np.float64) * 255).astype(np.uint8)


def threshold_levels(thresholds: np.ndarray, max_u8: int) -> np.ndarray:
    """Integer levels ``int(tau * max_u8)`` for each threshold (float64 product, truncation)."""
    return (np.asarray(thresholds, np.float64) * float(max_u8)).astype(np.int64)


def distinct_levels(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(levels, return_inverse=True)`` for a non-decreasing array, without sorting."""
    new = np.empty(levels.size, bool)
    new[:1] = True
    np.not_equal(levels[1:], levels[:-1], out=new[1:])
    return levels[new], np.cumsum(new) - 1


def _as_boxes(boxes: object, name: str, allow_empty: bool = False) -> np.ndarray:
    a = np.asarray(boxes)
    if a.ndim == 1 and a.size == 4:
        a = a[None]
    if a.ndim == 2 and a.shape == (0, 4) and allow_empty:
        return a
    if a.ndim != 2 or a.shape[1] != 4 or a.shape[0] < 1:
        raise MetricError(f"{name} must have shape (n, 4) with n >= 1, got {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise MetricError(f"{name} must be numeric, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise MetricError(f"{name} contain non-finite coordinates")
    if (a < 0).any():
        raise MetricError(f"{name} coordinates must be non-negative")
    if (a[:, 2] < a[:, 0]).any() or (a[:, 3] < a[:, 1]).any():
        raise MetricError(f"{name} must follow x0 <= x1 and y0 <= y1 (x0, y0, x1, y1 convention)")
    return a


def rescale_gt_boxes(boxes: object, image_size: Sequence[float], eval_size: int | Sequence[int]
                     ) -> np.ndarray:
    """Rescale GT boxes from the original image size to the evaluation size (wsolevaluation's rule).

    ``boxes``: ``(n, 4)`` x0, y0, x1, y1 in original pixels (ints or floats); ``image_size`` and
    ``eval_size``: ``(width, height)`` (an int means a square). Each coordinate becomes
    ``int(float(c) * new / old)``, computed left to right in float64, so results equal the
    reference's ``resize_bbox``. Returns int64 ``(n, 4)`` (``(0, 4)`` for no boxes; the
    accumulators need at least one box per image).

    >>> rescale_gt_boxes([[156, 163, 318, 230]], (500, 375), 224).tolist()
    [[69, 97, 142, 137]]
    """
    a = _as_boxes(boxes, "boxes", allow_empty=True).astype(np.float64)
    try:
        ow, oh = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise MetricError(f"image_size must be (width, height), got {image_size!r}") from None
    if isinstance(eval_size, (int, np.integer)):
        nw = nh = float(eval_size)
    else:
        try:
            nw, nh = (float(v) for v in eval_size)
        except (TypeError, ValueError):
            raise MetricError(f"eval_size must be an int or (width, height), got {eval_size!r}") from None
    if min(ow, oh, nw, nh) <= 0:
        raise MetricError(f"image_size and eval_size must be positive, got {image_size!r}, {eval_size!r}")
    out = np.empty(a.shape, np.float64)
    out[:, 0] = a[:, 0] * nw / ow
    out[:, 1] = a[:, 1] * nh / oh
    out[:, 2] = a[:, 2] * nw / ow
    out[:, 3] = a[:, 3] * nh / oh
    return np.trunc(out).astype(np.int64)


def boxes_from_scoremap(scoremap: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None,
                        multi_contour: bool = False) -> list[np.ndarray]:
    """Boxes at each threshold for one map, the straightforward way (one OpenCV trace per threshold).

    ``thresholds`` defaults to ``cam_thresholds(0.01)``. Returns one int64 array per threshold:
    ``(1, 4)`` with the largest contour's box (V1) or ``(n, 4)`` with every contour's box
    (``multi_contour=True``, V2). This is the readable reference; the accumulators compute the same
    boxes much faster.
    """
    u8 = quantize_scoremap(scoremap)
    thr = cam_thresholds(0.01) if thresholds is None else np.asarray(thresholds, np.float64)
    out = []
    for level in threshold_levels(thr, int(u8.max())):
        v1, allb = contour_boxes_at_level(u8, int(level))
        out.append(allb if multi_contour else v1[None])
    return out


def box_iou(boxes_a: object, boxes_b: object) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` with the +1-pixel convention (inclusive integer corners).

    >>> box_iou([[0, 0, 1, 1]], [[1, 1, 2, 2], [5, 5, 6, 6]]).tolist()
    [[0.14285714285714285, 0.0]]
    """
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    return iou_matrix(a.astype(np.int64), b.astype(np.int64))
