"""Streaming box metrics for WSOL: MaxBoxAcc (V1), MaxBoxAccV2, GT-known / Top-1 / Top-5 Loc.

Definitions (values in percent, as in wsolevaluation; see :mod:`camloc.metrics.boxes` for maps,
thresholds, boxes and IoU):

* For each image and each threshold ``tau`` of the grid ``np.arange(0, 1, interval)``:
  the **V1 box** is the bounding box of the largest contour (``cv2.contourArea``; first contour in
  OpenCV's order on ties), and **V2 boxes** are the boxes of every contour (outer and hole contours).
  An image is *correct at (tau, delta)* when the best IoU of its box(es) over its GT boxes is
  ``>= delta``.
* **MaxBoxAcc (V1)** = max over tau of the percentage of images whose V1 box reaches IoU 0.5
  (wsolevaluation with ``multi_contour_eval=False``). The reported threshold is the smallest tau
  attaining the maximum (``np.argmax``).
* **MaxBoxAccV2** = mean over delta in ``iou_thresholds`` (default 30, 50, 70) of
  max over tau of the percentage of images with some V2 box reaching IoU delta/100
  (``multi_contour_eval=True, multi_iou_eval=True``); each delta reports its own best tau.
* **GT-known Loc** = percentage of images whose V1 box reaches IoU 0.5; **Top-1 Loc** additionally
  needs a correct top-1 class, **Top-5 Loc** the label among the top 5. The box always comes from the
  ground-truth class's map (pass that map). Each is reported at ``fixed_threshold`` (default 0.2, which
  must be a point of the grid; it is resolved by grid index, never by float equality) and at its best
  tau (``best``, ``best_threshold``). GT-known Loc at its best tau equals MaxBoxAcc (V1).
* **Calibration**: :meth:`LocalizationAccumulator.evaluate_at` reports every metric at one given
  threshold, so a tau chosen on a held-out split (e.g. ``maxboxacc_v1["threshold"]`` of a validation
  accumulator) can be applied to the test split.

The accumulator keeps integer counts per threshold (never maps): memory is O(thresholds) plus a few
scalars per image for :attr:`LocalizationAccumulator.per_image`. :meth:`merge` is exact, so shards
(e.g. one per ``torch.distributed`` rank, shipped with :meth:`state_dict`) add up to one pass.

>>> import numpy as np
>>> acc = LocalizationAccumulator(interval=0.1, fixed_threshold=0.5)
>>> maps = np.zeros((1, 8, 8)); maps[0, 2:6, 2:6] = 1.0
>>> acc.update(maps, [np.array([[2, 2, 6, 6]])])
>>> r = acc.compute()
>>> r["maxboxacc_v1"], r["gt_known_loc"]["at_fixed"]
({'value': 100.0, 'threshold': 0.0}, 100.0)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from camloc.errors import MetricError
from camloc.metrics import _jit
from camloc.metrics._levels import _level_outcomes_numpy, trace_fallbacks
from camloc.metrics.boxes import (_as_boxes, cam_thresholds, check_scoremaps, distinct_levels,
                                  threshold_levels)

__all__ = ["LocalizationAccumulator", "grid_index"]

_V1_IOU = 0.5


def grid_index(thresholds: np.ndarray, tau: float, interval: float, name: str) -> int:
    """Index of ``tau`` in the grid ``np.arange(0, 1, interval)``; MetricError naming ``name`` if off."""
    try:
        t = float(tau)
    except (TypeError, ValueError):
        raise MetricError(f"{name} must be a number, got {tau!r}") from None
    if not (np.isfinite(t) and -1e-9 <= t < 1):
        raise MetricError(f"{name} must be a threshold in [0, 1) on the grid "
                          f"np.arange(0, 1, {interval!r}), got {tau!r}")
    k = int(round(t / interval))
    if not (0 <= k < len(thresholds)) or abs(thresholds[k] - t) > 1e-9 * max(1.0, abs(t)) + 1e-12:
        raise MetricError(f"{name}={tau!r} is not a point of the threshold grid "
                          f"np.arange(0, 1, {interval!r}); use a multiple of the interval below 1")
    return k


def _best(acc: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    k = int(np.argmax(acc))
    return {"value": float(acc[k]), "threshold": float(thresholds[k])}


class LocalizationAccumulator:
    """Streaming MaxBoxAcc / MaxBoxAccV2 / GT-known, Top-1 and Top-5 Loc (see module docstring).

    Parameters: ``interval`` of the threshold grid (0.01 default, 0.001 supported);
    ``iou_thresholds`` for MaxBoxAccV2 in percent (default 30, 50, 70); ``fixed_threshold`` for the
    Loc metrics (a grid point, default 0.2); ``keep_per_image`` to record per-image scalars;
    ``engine``: ``"auto"`` (the compiled engine once the job is large enough to pay for it, see
    :func:`camloc.metrics._jit.engine`), ``"numba"`` or ``"numpy"`` (same counts; the NumPy/OpenCV
    engine is the reference).
    """

    def __init__(self, interval: float = 0.01, iou_thresholds: Sequence[int] = (30, 50, 70),
                 fixed_threshold: float = 0.2, keep_per_image: bool = True,
                 engine: str = "auto") -> None:
        if engine not in ("auto", "numba", "numpy"):
            raise MetricError(f"engine must be 'auto', 'numba' or 'numpy', got {engine!r}")
        self.engine = engine
        self.thresholds = cam_thresholds(interval)
        self.interval = float(interval)
        try:
            ious = [int(v) for v in iou_thresholds]
        except (TypeError, ValueError):
            raise MetricError(f"iou_thresholds must be integers in percent, got {iou_thresholds!r}"
                              ) from None
        if not ious or any(not (0 < v <= 100) for v in ious) or len(set(ious)) != len(ious) or any(
                float(v) != float(o) for v, o in zip(ious, iou_thresholds)):
            raise MetricError(f"iou_thresholds must be distinct integers in (0, 100], got "
                              f"{iou_thresholds!r}")
        self.iou_thresholds = tuple(ious)
        self._fixed_index = grid_index(self.thresholds, fixed_threshold, self.interval,
                                       "fixed_threshold")
        self.fixed_threshold = float(self.thresholds[self._fixed_index])
        self.keep_per_image = bool(keep_per_image)
        nt = len(self.thresholds)
        self.count = 0
        self.n_top1 = 0
        self.n_top5 = 0
        self.v1_correct = np.zeros(nt, np.int64)
        self.v2_correct = np.zeros((len(self.iou_thresholds), nt), np.int64)
        self.top1_correct = np.zeros(nt, np.int64)
        self.top5_correct = np.zeros(nt, np.int64)
        self._ids: list[str | None] = []
        self._iou: list[np.ndarray] = []
        self._box: list[np.ndarray] = []

    # ------------------------------------------------------------------ updates
    def update(self, scoremaps: np.ndarray, gt_boxes: Sequence[np.ndarray],
               top1_correct: np.ndarray | None = None, top5_correct: np.ndarray | None = None,
               image_ids: Sequence[str] | None = None) -> None:
        """Score a batch of maps.

        ``scoremaps``: ``(N, H, W)`` floats in ``[0, 1]`` at evaluation size (one map per image, the
        ground-truth class's); ``gt_boxes``: N integer arrays ``(B_i, 4)`` at evaluation size (see
        :func:`camloc.metrics.rescale_gt_boxes`); ``top1_correct`` / ``top5_correct``: optional
        ``(N,)`` bools for Top-1 / Top-5 Loc; ``image_ids``: optional N strings for
        :attr:`per_image`.
        """
        maps = check_scoremaps(scoremaps)
        n = maps.shape[0]
        if isinstance(gt_boxes, np.ndarray) and gt_boxes.ndim == 3:
            gt_boxes = list(gt_boxes)
        if not isinstance(gt_boxes, (list, tuple)) or len(gt_boxes) != n:
            got = len(gt_boxes) if hasattr(gt_boxes, "__len__") else type(gt_boxes).__name__
            raise MetricError(f"gt_boxes must be a list of {n} arrays (one per map), got {got}")
        gts = []
        for i, g in enumerate(gt_boxes):
            a = _as_boxes(g, f"gt_boxes[{i}]")
            if np.issubdtype(a.dtype, np.floating) and (a != np.trunc(a)).any():
                raise MetricError(f"gt_boxes[{i}] must hold integer pixel coordinates at evaluation "
                                  "size; rescale with camloc.metrics.rescale_gt_boxes")
            gts.append(np.ascontiguousarray(a, dtype=np.int64))
        t1 = self._flags(top1_correct, n, "top1_correct")
        t5 = self._flags(top5_correct, n, "top5_correct")
        ids: list[str | None]
        if image_ids is not None:
            ids = [str(s) for s in image_ids]
            if len(ids) != n:
                raise MetricError(f"image_ids must have {n} entries, got {len(ids)}")
        else:
            ids = [None] * n  # per_image names them by their index

        dthr = np.asarray(self.iou_thresholds, np.float64) / 100
        rec_iou = np.zeros(n, np.float64)
        rec_box = np.zeros((n, 4), np.int32)
        k = self._kernels(maps)
        if k is not None:
            self._update_compiled(k, maps, gts, t1, t5, dthr, rec_iou, rec_box)
        else:
            t0 = time.perf_counter()
            self._update_numpy(maps, gts, t1, t5, dthr, rec_iou, rec_box)
            _jit.note_numpy_seconds(time.perf_counter() - t0)
        self.count += n
        self.n_top1 += n if t1 is not None else 0
        self.n_top5 += n if t5 is not None else 0
        if self.keep_per_image:
            self._ids.extend(ids)
            self._iou.append(rec_iou)
            self._box.append(rec_box)

    def _kernels(self, maps: np.ndarray) -> dict[str, Any] | None:
        return _jit.select(self.engine, maps.size, _jit.fits(maps.shape[1:]))

    def _update_numpy(self, maps: np.ndarray, gts: list[np.ndarray], t1: np.ndarray | None,
                      t5: np.ndarray | None, dthr: np.ndarray, rec_iou: np.ndarray,
                      rec_box: np.ndarray) -> None:
        thr = self.thresholds
        kf = self._fixed_index
        m64 = np.empty(maps.shape[1:], np.float64)
        for i in range(maps.shape[0]):
            m64[...] = maps[i]
            m64 *= 255
            u8 = m64.astype(np.uint8)
            uniq, inv = distinct_levels(threshold_levels(thr, int(u8.max())))
            v1_box, v1_iou, v2_best = _level_outcomes_numpy(u8, uniq, gts[i], dthr)
            v1_ok = v1_iou[inv] >= _V1_IOU
            self.v1_correct += v1_ok
            self.v2_correct += v2_best[inv][None, :] >= dthr[:, None]
            if t1 is not None and t1[i]:
                self.top1_correct += v1_ok
            if t5 is not None and t5[i]:
                self.top5_correct += v1_ok
            rec_iou[i] = v1_iou[inv[kf]]
            rec_box[i] = v1_box[inv[kf]]

    def _update_compiled(self, k: dict[str, Any], maps: np.ndarray, gts: list[np.ndarray],
                         t1: np.ndarray | None, t5: np.ndarray | None, dthr: np.ndarray,
                         rec_iou: np.ndarray, rec_box: np.ndarray) -> None:
        h, w = maps.shape[1:]
        ws = _jit.workspace(h, w)
        kf = self._fixed_index
        m64 = np.empty((h, w), np.float64)
        own = maps.dtype == np.float64 and maps.flags.c_contiguous
        for i in range(maps.shape[0]):
            if own:
                m = maps[i]
            else:
                m64[...] = maps[i]
                m = m64
            inv, lv, v1_box, v1_iou, v2, fb, u8 = k["map_outcomes"](m, self.thresholds, gts[i], dthr,
                                                                    False, ws)
            if fb.any():
                trace_fallbacks(u8, lv, gts[i], v1_box, v1_iou, fb)
            k["add_counts"](inv, v1_iou, v2, dthr, self.v1_correct, self.v2_correct,
                            self.top1_correct, self.top5_correct,
                            bool(t1 is not None and t1[i]), bool(t5 is not None and t5[i]))
            j = inv[kf]
            rec_iou[i] = v1_iou[j]
            rec_box[i] = v1_box[j]

    @staticmethod
    def _flags(v: np.ndarray | None, n: int, name: str) -> np.ndarray | None:
        if v is None:
            return None
        a = np.asarray(v)
        if a.shape != (n,):
            raise MetricError(f"{name} must have shape ({n},), got {a.shape}")
        if a.dtype != bool and not np.isin(a, (0, 1)).all():
            raise MetricError(f"{name} must hold booleans")
        return a.astype(bool)

    # ------------------------------------------------------------------ reduction
    def _check_compatible(self, other: LocalizationAccumulator) -> None:
        if not isinstance(other, LocalizationAccumulator):
            raise MetricError(f"can only merge a LocalizationAccumulator, got {type(other).__name__}")
        mine = (self.interval, self.iou_thresholds, self._fixed_index, len(self.thresholds))
        theirs = (other.interval, other.iou_thresholds, other._fixed_index, len(other.thresholds))
        if mine != theirs:
            raise MetricError(f"cannot merge accumulators with different settings: "
                              f"(interval, iou_thresholds, fixed index, n thresholds) {mine} vs {theirs}")

    def merge(self, other: LocalizationAccumulator) -> LocalizationAccumulator:
        """Add another accumulator's counts (exact); returns ``self``."""
        self._check_compatible(other)
        self.count += other.count
        self.n_top1 += other.n_top1
        self.n_top5 += other.n_top5
        self.v1_correct += other.v1_correct
        self.v2_correct += other.v2_correct
        self.top1_correct += other.top1_correct
        self.top5_correct += other.top5_correct
        if self.keep_per_image:
            self._ids.extend(other._ids)
            self._iou.extend(other._iou)
            self._box.extend(other._box)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Counts and settings as numpy arrays / Python scalars (for saving or distributed reduce)."""
        rec_iou, rec_box = self._records()
        return {
            "interval": self.interval,
            "iou_thresholds": np.asarray(self.iou_thresholds, np.int64),
            "fixed_threshold": self.fixed_threshold,
            "keep_per_image": self.keep_per_image,
            "count": self.count,
            "n_top1": self.n_top1,
            "n_top5": self.n_top5,
            "v1_correct": self.v1_correct.copy(),
            "v2_correct": self.v2_correct.copy(),
            "top1_correct": self.top1_correct.copy(),
            "top5_correct": self.top5_correct.copy(),
            # "" marks images without an id (named by their index, also after merging)
            "per_image_ids": np.asarray(["" if i is None else i for i in self._ids], dtype=str),
            "per_image_iou": rec_iou,
            "per_image_box": rec_box,
        }

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> LocalizationAccumulator:
        """Rebuild an accumulator saved with :meth:`state_dict`."""
        try:
            acc = cls(interval=float(d["interval"]),
                      iou_thresholds=[int(v) for v in np.asarray(d["iou_thresholds"])],
                      fixed_threshold=float(d["fixed_threshold"]),
                      keep_per_image=bool(d.get("keep_per_image", True)))
            acc.count = int(d["count"])
            acc.n_top1 = int(d["n_top1"])
            acc.n_top5 = int(d["n_top5"])
            for name in ("v1_correct", "v2_correct", "top1_correct", "top5_correct"):
                arr = np.asarray(d[name], np.int64)
                if arr.shape != getattr(acc, name).shape:
                    raise MetricError(f"state_dict[{name!r}] has shape {arr.shape}, expected "
                                      f"{getattr(acc, name).shape}")
                setattr(acc, name, arr.copy())
            if acc.keep_per_image:
                acc._ids = [str(s) or None for s in np.asarray(d["per_image_ids"]).tolist()]
                acc._iou = [np.asarray(d["per_image_iou"], np.float64)]
                acc._box = [np.asarray(d["per_image_box"], np.int32).reshape(-1, 4)]
        except KeyError as e:
            raise MetricError(f"state_dict is missing {e.args[0]!r}") from None
        return acc

    # ------------------------------------------------------------------ results
    def _records(self) -> tuple[np.ndarray, np.ndarray]:
        iou = np.concatenate(self._iou) if self._iou else np.zeros(0, np.float64)
        box = np.concatenate(self._box) if self._box else np.zeros((0, 4), np.int32)
        return iou, box

    def _names(self) -> list[str]:
        return [str(i) if s is None else s for i, s in enumerate(self._ids)]

    @property
    def per_image(self) -> list[dict[str, Any]]:
        """One small record per image, in update order: ``image_id`` (as given, else the image's
        running index as a string), ``iou`` (best IoU of the V1 box at the fixed threshold over the GT
        boxes) and that ``box`` (x0, y0, x1, y1 at evaluation size). About 25 bytes per image plus
        the ids; ``keep_per_image=False`` keeps nothing."""
        iou, box = self._records()
        return [{"image_id": i, "iou": float(v), "box": b.tolist()}
                for i, v, b in zip(self._names(), iou, box)]

    def _pct(self, counts: np.ndarray, denom: int) -> np.ndarray:
        return counts * 100.0 / float(denom)

    def evaluate_at(self, threshold: float) -> dict[str, Any]:
        """Every metric at one threshold of the grid (for calibration on another split)."""
        if self.count == 0:
            raise MetricError("no images were scored; call update() first")
        k = grid_index(self.thresholds, threshold, self.interval, "threshold")
        v1 = float(self._pct(self.v1_correct[k], self.count))
        v2 = {str(d): float(self._pct(self.v2_correct[j, k], self.count))
              for j, d in enumerate(self.iou_thresholds)}
        return {
            "threshold": float(self.thresholds[k]),
            "boxacc_v1": v1,
            "boxacc_v2": {"value": float(np.mean(list(v2.values()))), "per_iou": v2},
            "gt_known_loc": v1,
            "top1_loc": (float(self._pct(self.top1_correct[k], self.count))
                         if self.n_top1 == self.count else None),
            "top5_loc": (float(self._pct(self.top5_correct[k], self.count))
                         if self.n_top5 == self.count else None),
            "count": self.count,
        }

    def compute(self, threshold: float | None = None) -> dict[str, Any]:
        """All metrics (JSON-serialisable). With ``threshold``, also ``"calibrated"``:
        :meth:`evaluate_at` of that threshold."""
        if self.count == 0:
            raise MetricError("no images were scored; call update() first")
        thr = self.thresholds
        v1 = self._pct(self.v1_correct, self.count)
        v2 = self._pct(self.v2_correct, self.count)
        per_iou = {str(d): _best(v2[j], thr) for j, d in enumerate(self.iou_thresholds)}
        kf = self._fixed_index

        def loc(counts: np.ndarray, available: bool) -> dict[str, Any]:
            if not available:
                return {"fixed_threshold": self.fixed_threshold, "at_fixed": None, "best": None,
                        "best_threshold": None}
            acc = self._pct(counts, self.count)
            b = _best(acc, thr)
            return {"fixed_threshold": self.fixed_threshold, "at_fixed": float(acc[kf]),
                    "best": b["value"], "best_threshold": b["threshold"]}

        out: dict[str, Any] = {
            "count": self.count,
            "interval": self.interval,
            "maxboxacc_v1": _best(v1, thr),
            "maxboxacc_v2": {"value": float(np.mean([p["value"] for p in per_iou.values()])),
                             "per_iou": per_iou},
            "gt_known_loc": loc(self.v1_correct, True),
            "top1_loc": loc(self.top1_correct, self.n_top1 == self.count),
            "top5_loc": loc(self.top5_correct, self.n_top5 == self.count),
            "curves": {"thresholds": thr.tolist(),
                       "v1": {"50": v1.tolist()},
                       "v2": {str(d): v2[j].tolist() for j, d in enumerate(self.iou_thresholds)}},
        }
        if threshold is not None:
            out["calibrated"] = self.evaluate_at(threshold)
        return out
