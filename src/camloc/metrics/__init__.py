"""WSOL metrics with clovaai/wsolevaluation's exact definitions, as streaming accumulators.

* :class:`LocalizationAccumulator`: MaxBoxAcc (V1), MaxBoxAccV2, GT-known / Top-1 / Top-5 Loc, with
  the best thresholds reported and threshold calibration (:meth:`~LocalizationAccumulator.evaluate_at`).
* :class:`PxAPAccumulator`: PxAP and PIoU from uint8 GT masks (0 bg, 1 fg, 255 ignore).
* :class:`ClassificationAccumulator`: top-1 / top-5 accuracy.
* Helpers: :func:`normalize_minmax`, :func:`cam_thresholds`, :func:`rescale_gt_boxes`,
  :func:`boxes_from_scoremap`, :func:`box_iou`.

Every accumulator has ``update`` / ``merge`` / ``state_dict`` / ``from_state_dict`` / ``compute``;
merging shards is exact. The definitions are in the docstrings of :mod:`camloc.metrics.boxes`,
:mod:`camloc.metrics.localization` and :mod:`camloc.metrics.pxap` (and docs/metrics.md).

>>> import numpy as np
>>> from camloc.metrics import LocalizationAccumulator, normalize_minmax
>>> acc = LocalizationAccumulator()
>>> cam = normalize_minmax(np.outer(np.hanning(16), np.hanning(16)))
>>> acc.update(cam[None], [np.array([[4, 4, 11, 11]])])
>>> acc.compute()["maxboxacc_v1"]["value"]
100.0
"""

from camloc.metrics.boxes import (
    box_iou,
    boxes_from_scoremap,
    cam_thresholds,
    normalize_minmax,
    quantize_scoremap,
    rescale_gt_boxes,
)
from camloc.metrics.classification import ClassificationAccumulator
from camloc.metrics.localization import LocalizationAccumulator
from camloc.metrics.pxap import PxAPAccumulator

__all__ = [
    "LocalizationAccumulator",
    "ClassificationAccumulator",
    "PxAPAccumulator",
    "normalize_minmax",
    "cam_thresholds",
    "quantize_scoremap",
    "rescale_gt_boxes",
    "boxes_from_scoremap",
    "box_iou",
]

# Faithfulness accumulators (camloc.metrics.faithfulness); loaded on first use, since they need torch.
_FAITHFULNESS = ("AverageDropAccumulator", "DeletionInsertionAccumulator", "ROADAccumulator")
__all__ += list(_FAITHFULNESS)


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name in _FAITHFULNESS:
        from camloc.metrics import faithfulness

        return getattr(faithfulness, name)
    raise AttributeError(f"module 'camloc.metrics' has no attribute {name!r}")
