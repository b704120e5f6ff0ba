"""From maps to masks and boxes.

The paper's rule (Zhou et al. 2016, section 3): keep the pixels whose value is above a fraction
(default 20%) of the map's maximum, and box the largest connected component. camloc uses
8-connectivity and also offers every component's box, for several objects.

Box convention here: ``x0, y0, x1, y1`` as continuous pixel edges, so a component spanning pixel
columns 3..7 has ``x0 = 3, x1 = 8`` (width ``x1 - x0``). The WSOL metrics in
:mod:`camloc.metrics` use wsolevaluation's own integer convention instead; see there.

>>> import numpy as np
>>> m = np.zeros((10, 10), np.float32); m[2:5, 3:8] = 1.0
>>> largest_box(threshold_mask(m, 0.2)).tolist()
[3.0, 2.0, 8.0, 5.0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

from camloc.errors import ConfigError

__all__ = ["threshold_mask", "component_boxes", "largest_box", "largest_boxes", "boxes_from_map",
           "EMPTY_BOX"]

EMPTY_BOX = np.zeros(4, dtype=np.float64)


def threshold_mask(scoremap: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Pixels strictly above ``threshold * max(scoremap)``; all False if the max is not positive
    or the map has NaNs."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold={threshold}: expected a fraction in [0, 1]")
    m = np.asarray(scoremap, dtype=np.float32)
    if m.ndim != 2:
        raise ConfigError(f"scoremap: expected a 2-D map, got shape {m.shape}")
    if m.size == 0 or np.isnan(m).any():
        return np.zeros(m.shape, dtype=bool)
    mx = float(m.max())
    if mx <= 0:
        return np.zeros(m.shape, dtype=bool)
    return m > threshold * mx


def component_boxes(mask: np.ndarray, min_area: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and pixel areas of every 8-connected component, largest first.

    Returns ``(boxes (B, 4) float64, areas (B,) int64)``.
    """
    mask_u8 = np.ascontiguousarray(mask, dtype=np.uint8)
    if mask_u8.ndim != 2:
        raise ConfigError(f"mask: expected a 2-D mask, got shape {mask_u8.shape}")
    if not mask_u8.any():
        return np.zeros((0, 4), np.float64), np.zeros(0, np.int64)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask_u8, connectivity=8)
    st = stats[1:]
    keep = st[:, cv2.CC_STAT_AREA] >= min_area
    st = st[keep]
    order = np.argsort(-st[:, cv2.CC_STAT_AREA], kind="stable")
    st = st[order]
    x, y = st[:, cv2.CC_STAT_LEFT], st[:, cv2.CC_STAT_TOP]
    boxes = np.stack([x, y, x + st[:, cv2.CC_STAT_WIDTH], y + st[:, cv2.CC_STAT_HEIGHT]], 1)
    return boxes.astype(np.float64), st[:, cv2.CC_STAT_AREA].astype(np.int64)


def largest_box(mask: np.ndarray) -> np.ndarray:
    """The box of the largest 8-connected component by pixel count (zeros if the mask is empty).

    Fast path: the outer contours of a binary image are exactly its 8-connected components, so
    when there is one contour its bounding rectangle is the answer (about 15x cheaper than
    labelling); with several, the components are labelled to compare pixel counts.
    """
    mask_u8 = np.ascontiguousarray(mask, dtype=np.uint8)
    if mask_u8.ndim != 2:
        raise ConfigError(f"mask: expected a 2-D mask, got shape {mask_u8.shape}")
    contours, _ = cv2.findContours(mask_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return EMPTY_BOX.copy()
    if len(contours) == 1:
        x, y, w, h = cv2.boundingRect(contours[0])
        return np.array([x, y, x + w, y + h], dtype=np.float64)
    boxes, _ = component_boxes(mask_u8)
    return boxes[0]


def largest_boxes(maps: torch.Tensor, threshold: float = 0.2) -> np.ndarray:
    """Largest-component boxes of a batch of maps ``(..., H, W)`` -> ``(..., 4)``.

    Thresholding (strictly above ``threshold`` times each map's maximum, nothing where the maximum
    is not positive) happens on the maps' device, so only a uint8 mask crosses to the CPU.
    """
    import torch

    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold={threshold}: expected a fraction in [0, 1]")
    flat = maps.reshape(-1, *maps.shape[-2:])
    mx = flat.amax(dim=(1, 2), keepdim=True)  # NaN where a map holds NaN (max propagates it)
    # no pixel passes where the max is not positive or NaN (NaN > 0 is false): cut at +inf there
    cut = torch.where(mx > 0, threshold * mx, torch.full_like(mx, float("inf")))
    masks = (flat > cut).view(torch.uint8).cpu().numpy()
    out = np.stack([largest_box(m) for m in masks]) if len(masks) else np.zeros((0, 4))
    return out.reshape(*maps.shape[:-2], 4)


def boxes_from_map(scoremap: np.ndarray, threshold: float = 0.2, multi: bool = False,
                   min_area: int = 1) -> np.ndarray:
    """Threshold a map and return ``(1, 4)`` (largest component) or ``(B, 4)`` (every component)
    boxes in the map's pixel grid."""
    mask = threshold_mask(scoremap, threshold)
    if multi:
        return component_boxes(mask, min_area)[0]
    return largest_box(mask)[None, :]
