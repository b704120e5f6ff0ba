"""Streaming PxAP (pixel average precision) and PIoU, as wsolevaluation's ``MaskEvaluator``.

Definitions (values in percent):

* GT masks are uint8 ``(H, W)``: 0 background, 1 foreground, 255 ignore (ignore pixels are left out).
* Thresholds ``t_0..t_{K-1} = np.arange(0, 1, interval)``; bin edges ``t_0, ..., t_{K-1}, 1, 2, 3``
  (``np.histogram`` semantics: ``[t_k, t_{k+1})``, the last bin closed). Score histograms of
  foreground and background pixels are accumulated (integer counts; the map values are used as
  float64, not quantised).
* ``tp, fp`` = reversed cumulative sums of those histograms (pixels scoring at least a bin's left
  edge), ``fn = #fg - tp``; ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``;
  **PxAP** = ``100 * sum(precision[1:] * diff(recall))`` over entries with ``tp + fp > 0`` (exactly
  ``MaskEvaluator.compute``).
* **PIoU** = ``100 * max_k tp_k / (tp_k + fp_k + fn_k)`` where ``tp_k, fp_k, fn_k`` count pixels with
  score ``>= t_k`` (i.e. the best pixel IoU over the threshold grid); ``piou_threshold`` is the
  smallest ``t_k`` attaining it. Use :meth:`PxAPAccumulator.evaluate_at` to read the pixel IoU at a
  threshold calibrated elsewhere.

>>> import numpy as np
>>> acc = PxAPAccumulator(interval=0.5)
>>> acc.update(np.array([[[0.9, 0.1]]]), np.array([[[1, 0]]], np.uint8))
>>> r = acc.compute()
>>> r["pxap"], r["piou"], r["piou_threshold"]
(100.0, 100.0, 0.5)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from camloc.errors import MetricError
from camloc.metrics import _jit
from camloc.metrics.boxes import cam_thresholds, check_scoremaps
from camloc.metrics.localization import grid_index

__all__ = ["PxAPAccumulator"]


class PxAPAccumulator:
    """Streaming PxAP / PIoU over score maps and uint8 GT masks (0 bg, 1 fg, 255 ignore).

    ``engine``: ``"auto"``, ``"numba"`` or ``"numpy"`` (``np.histogram``, the reference); the
    compiled histogram gives the same counts (see :func:`camloc.metrics._jit.engine`).
    """

    def __init__(self, interval: float = 0.01, engine: str = "auto") -> None:
        if engine not in ("auto", "numba", "numpy"):
            raise MetricError(f"engine must be 'auto', 'numba' or 'numpy', got {engine!r}")
        self.engine = engine
        self.thresholds = cam_thresholds(interval)
        self.interval = float(interval)
        self.edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        nb = len(self.thresholds) + 2
        self.gt_true_hist = np.zeros(nb, np.int64)
        self.gt_false_hist = np.zeros(nb, np.int64)
        self.count = 0

    def update(self, scoremaps: np.ndarray, gt_masks: np.ndarray) -> None:
        """Accumulate ``scoremaps`` ``(N, H, W)`` in ``[0, 1]`` against ``gt_masks`` ``(N, H, W)`` uint8."""
        maps = check_scoremaps(scoremaps)
        masks = np.asarray(gt_masks)
        if masks.shape != maps.shape:
            raise MetricError(f"gt_masks must have the shape of scoremaps {maps.shape}, got {masks.shape}")
        if not np.issubdtype(masks.dtype, np.integer):
            raise MetricError(f"gt_masks must be uint8 (0 bg, 1 fg, 255 ignore), got dtype {masks.dtype}")
        bad = (masks != 0) & (masks != 1) & (masks != 255)
        if bad.any():
            raise MetricError(f"gt_masks may only hold 0 (bg), 1 (fg) and 255 (ignore); found "
                              f"{np.unique(masks[bad])[:5].tolist()}")
        k = self._kernels(maps)
        if k is not None:
            m8 = masks if masks.dtype == np.uint8 else masks.astype(np.uint8)
            for i in range(maps.shape[0]):
                k["histogram_fg_bg"](np.ascontiguousarray(maps[i]), np.ascontiguousarray(m8[i]),
                                     self.edges, 1.0 / self.interval, self.gt_true_hist,
                                     self.gt_false_hist)
        else:
            t0 = time.perf_counter()
            self.gt_true_hist += np.histogram(maps[masks == 1], bins=self.edges)[0]
            self.gt_false_hist += np.histogram(maps[masks == 0], bins=self.edges)[0]
            _jit.note_numpy_seconds(time.perf_counter() - t0)
        self.count += maps.shape[0]

    def _kernels(self, maps: np.ndarray) -> dict[str, Any] | None:
        return _jit.select(self.engine, maps.size, maps.dtype in (np.float32, np.float64))

    def merge(self, other: PxAPAccumulator) -> PxAPAccumulator:
        """Add another accumulator's histograms (exact); returns ``self``."""
        if not isinstance(other, PxAPAccumulator):
            raise MetricError(f"can only merge a PxAPAccumulator, got {type(other).__name__}")
        if other.thresholds.shape != self.thresholds.shape or other.interval != self.interval:
            raise MetricError(f"cannot merge PxAP accumulators with intervals {self.interval} and "
                              f"{other.interval}")
        self.gt_true_hist += other.gt_true_hist
        self.gt_false_hist += other.gt_false_hist
        self.count += other.count
        return self

    def state_dict(self) -> dict[str, Any]:
        """Histograms and settings (numpy arrays and Python scalars)."""
        return {"interval": self.interval, "count": self.count,
                "gt_true_hist": self.gt_true_hist.copy(), "gt_false_hist": self.gt_false_hist.copy()}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> PxAPAccumulator:
        """Rebuild an accumulator saved with :meth:`state_dict`."""
        try:
            acc = cls(interval=float(d["interval"]))
            acc.count = int(d["count"])
            for name in ("gt_true_hist", "gt_false_hist"):
                arr = np.asarray(d[name], np.int64)
                if arr.shape != getattr(acc, name).shape:
                    raise MetricError(f"state_dict[{name!r}] has shape {arr.shape}, expected "
                                      f"{getattr(acc, name).shape}")
                setattr(acc, name, arr.copy())
        except KeyError as e:
            raise MetricError(f"state_dict is missing {e.args[0]!r}") from None
        return acc

    def _curves(self) -> dict[str, np.ndarray]:
        num_true = self.gt_true_hist.sum()
        num_false = self.gt_false_hist.sum()
        tp = self.gt_true_hist[::-1].cumsum()
        fn = num_true - tp
        fp = self.gt_false_hist[::-1].cumsum()
        if ((tp + fn) <= 0).all():
            raise MetricError("no foreground (1) pixel in the GT masks scored so far")
        if ((tp + fp) <= 0).all():
            raise MetricError("no scored pixel outside ignore regions")
        return {"tp": tp, "fp": fp, "fn": fn, "num_false": np.int64(num_false)}

    def evaluate_at(self, threshold: float) -> dict[str, Any]:
        """Pixel precision, recall and IoU (percent) for pixels scoring ``>= threshold`` (a grid point)."""
        c = self._curves()
        k = grid_index(self.thresholds, threshold, self.interval, "threshold")
        i = len(self.thresholds) + 1 - k  # reversed-cumsum index of "score >= t_k"
        tp, fp, fn = (float(c[n][i]) for n in ("tp", "fp", "fn"))
        return {"threshold": float(self.thresholds[k]),
                "precision": 100.0 * tp / (tp + fp) if tp + fp > 0 else 0.0,
                "recall": 100.0 * tp / (tp + fn) if tp + fn > 0 else 0.0,
                "iou": 100.0 * tp / (tp + fp + fn) if tp + fp + fn > 0 else 0.0}

    def compute(self) -> dict[str, Any]:
        """``{pxap, piou, piou_threshold, count, curves}`` (JSON-serialisable)."""
        if self.count == 0:
            raise MetricError("no images were scored; call update() first")
        c = self._curves()
        tp, fp, fn = (c[n].astype(np.float64) for n in ("tp", "fp", "fn"))
        nz = (tp + fp) != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
            iou = tp / (tp + fp + fn)
        auc = float((precision[1:] * np.diff(recall))[nz[1:]].sum() * 100)
        # threshold t_k  <->  reversed index K + 1 - k
        kk = len(self.thresholds) + 1 - np.arange(len(self.thresholds))
        iou_t = np.nan_to_num(iou[kk]) * 100
        kbest = int(np.argmax(iou_t))
        return {
            "pxap": auc,
            "piou": float(iou_t[kbest]),
            "piou_threshold": float(self.thresholds[kbest]),
            "count": self.count,
            "curves": {"thresholds": self.thresholds.tolist(),
                       "precision": (np.nan_to_num(precision[kk]) * 100).tolist(),
                       "recall": (np.nan_to_num(recall[kk]) * 100).tolist(),
                       "iou": iou_t.tolist()},
        }
