"""A raw class activation map -> the score map the WSOL metrics take, as wsolevaluation makes it:
resized to the evaluation grid with OpenCV's bicubic interpolation, then normalised (``wsol``:
min-max; ``paper``: negatives clipped to 0 and divided by the maximum).

>>> import numpy as np
>>> m = prepare_scoremap(np.array([[0.0, 1.0], [2.0, 4.0]]), size=4)
>>> m.shape, float(m.min()), float(m.max())
((4, 4), 0.0, 1.0)
"""

from __future__ import annotations

import cv2
import numpy as np

from camloc.metrics.boxes import normalize_minmax

__all__ = ["EVAL_SIZE", "prepare_scoremap"]

#: side of the square grid the WSOL metrics are taken on (wsolevaluation's 224)
EVAL_SIZE = 224


def prepare_scoremap(cam: np.ndarray, size: int = EVAL_SIZE, protocol: str = "wsol") -> np.ndarray:
    """A raw low-resolution CAM -> the ``size x size`` ``[0, 1]`` score map the metrics take."""
    resized = cv2.resize(np.asarray(cam, np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    if protocol == "wsol":
        return normalize_minmax(resized)
    if np.isnan(resized).any():
        return np.zeros_like(resized)
    mx = float(resized.max())
    return (resized.clip(0, None) / mx).astype(np.float32) if mx > 0 else np.zeros_like(resized)
