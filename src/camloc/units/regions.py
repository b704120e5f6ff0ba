"""A unit's region in each of its top images, and how much of it lies inside the object box.

As in network dissection (Bau et al., CVPR 2017), unit ``k``'s low-resolution map is upsampled
(bicubic) and thresholded at ``T_k``, the value exceeded by the top ``quantile`` (default 0.5%)
of that unit's activations over the whole dataset (from the sketch). The map is upsampled to the
network input, at most ``REGION_SIZE`` (112) pixels a side (the resolution network dissection
scores its 224 x 224 images at): a 224 x 224 input is cut at 112 x 112, which is four times
cheaper and changes region fractions by well under a percent. For every top image this gives:

- ``region_box``: the bounding box of all pixels above ``T_k``; ``region_area``: their fraction of
  the image (0 when the upsampled map never exceeds ``T_k``);
- ``peak``: the maximum of the upsampled map and ``peak_xy`` its position; ``crop_box``: a square
  of two feature cells (64 x 64 input pixels for a 7 x 7 map of a 224 x 224 input) centred on the
  peak (moved inside the image at the borders), for the gallery crop;
- with ground-truth boxes: ``inside`` (fraction of the region's pixels inside the union of the
  boxes), ``coverage`` (fraction of the boxes' pixels the region covers) and ``box_area`` (the
  boxes' fraction of the image: what ``inside`` is for a region placed at random).

Coordinates in the output are original-image pixels (continuous, ``x0, y0, x1, y1`` pixel edges).
A pixel belongs to a box when its centre lies inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camloc.units.data import UnitItem

__all__ = ["unit_regions", "region_preprocess", "CROP_CELLS", "REGION_SIZE"]

CROP_CELLS = 2.0
REGION_SIZE = 112


def region_preprocess(preprocess: Any) -> Any:
    """The preprocessing whose input grid regions are cut on: the model's, at most
    ``REGION_SIZE`` pixels a side (same aspect)."""
    hin, win = preprocess.input_size
    s = min(1.0, REGION_SIZE / max(hin, win))
    return preprocess.with_(input_size=(max(1, round(hin * s)), max(1, round(win * s))))


def _overlap(mask: torch.Tensor, boxes: np.ndarray) -> tuple[int, int]:
    """Pixels of ``mask`` (H, W) inside the union of ``boxes`` (input pixels, pixel centres
    inside), and the union's pixel count."""
    h, w = mask.shape
    rects = []
    for x0, y0, x1, y1 in boxes:
        c0, c1 = max(int(np.ceil(x0 - 0.5)), 0), min(int(np.floor(x1 - 0.5)) + 1, w)
        r0, r1 = max(int(np.ceil(y0 - 0.5)), 0), min(int(np.floor(y1 - 0.5)) + 1, h)
        if c1 > c0 and r1 > r0:
            rects.append((r0, r1, c0, c1))
    if len(rects) == 1:  # the common case: one box, no raster needed
        r0, r1, c0, c1 = rects[0]
        return int(torch.count_nonzero(mask[r0:r1, c0:c1])), (r1 - r0) * (c1 - c0)
    union = torch.zeros((h, w), dtype=torch.bool)
    for r0, r1, c0, c1 in rects:
        union[r0:r1, c0:c1] = True
    return int(torch.count_nonzero(mask & union)), int(torch.count_nonzero(union))


def _to_original(g: Any, box: Sequence[float]) -> list[float]:
    """An input-pixel box ``x0, y0, x1, y1`` in original pixels (clipped), rounded to 0.1."""
    x0, y0, x1, y1 = box
    sx, sy, ox, oy = g.scale_x, g.scale_y, g.offset_x, g.offset_y
    return [round(min(max((x0 + ox) / sx, 0.0), g.width), 1),
            round(min(max((y0 + oy) / sy, 0.0), g.height), 1),
            round(min(max((x1 + ox) / sx, 0.0), g.width), 1),
            round(min(max((y1 + oy) / sy, 0.0), g.height), 1)]


def _first_last(any_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first and one past the last nonzero along the last dim."""
    n = any_.shape[-1]
    return any_.argmax(dim=-1), n - any_.flip(-1).argmax(dim=-1)


def unit_regions(maps: torch.Tensor, index: torch.Tensor, sizes: torch.Tensor,
                 thresholds: torch.Tensor, items: Sequence[UnitItem], preprocess: Any,
                 chunk: int = 16) -> list[list[dict[str, Any]]]:
    """Regions of every stored top image of every unit.

    Args:
        maps: ``(K, m, h, w)`` low-resolution unit maps; ``index`` ``(K, m)`` dataset indices
            (``-1`` for empty slots); ``sizes`` ``(K, m, 2)`` original ``(width, height)``.
        thresholds: ``(K,)`` per-unit thresholds ``T_k``.
        items: the whole dataset (``items[index]`` gives boxes and ids).
        preprocess: the model's (stretch) preprocessing; regions are cut on its input grid, at
            most ``REGION_SIZE`` a side (:func:`region_preprocess`).

    Returns one list per unit, of one dict per non-empty slot (in rank order).
    """
    from camloc.cams import upsample

    k_units, m = index.shape
    preprocess = region_preprocess(preprocess)
    hin, win = preprocess.input_size
    h, w = maps.shape[-2:]
    half_x = min(CROP_CELLS / 2.0 * win / w, win / 2.0)
    half_y = min(CROP_CELLS / 2.0 * hin / h, hin / 2.0)
    geoms: dict[tuple[int, int], Any] = {}

    def geom(wh: tuple[int, int]) -> Any:
        if wh not in geoms:
            geoms[wh] = preprocess.geometry(*wh)
        return geoms[wh]

    thr = thresholds.to(torch.float32).cpu()
    out: list[list[dict[str, Any]]] = []
    for k0 in range(0, k_units, chunk):
        k1 = min(k0 + chunk, k_units)
        up = upsample(maps[k0:k1].float().cpu(), (hin, win), "bicubic")  # (kc, m, H, W)
        flat = up.flatten(2)
        peak_val, peak_at = flat.max(dim=2)
        t = thr[k0:k1, None, None]
        mask = up > t[..., None]
        count = torch.count_nonzero(mask, dim=(2, 3))
        y0, y1 = _first_last((up.amax(dim=3) > t).to(torch.uint8))
        x0, x1 = _first_last((up.amax(dim=2) > t).to(torch.uint8))
        idx = index[k0:k1].cpu()
        wh = sizes[k0:k1].cpu()
        for kk in range(k1 - k0):
            rows: list[dict[str, Any]] = []
            for j in range(m):
                gi = int(idx[kk, j])
                if gi < 0:
                    continue
                g = geom((int(wh[kk, j, 0]), int(wh[kk, j, 1])))
                py, px = divmod(int(peak_at[kk, j]), win)
                cx = min(max(px + 0.5, half_x), win - half_x)  # the window stays inside
                cy = min(max(py + 0.5, half_y), hin - half_y)
                crop = (cx - half_x, cy - half_y, cx + half_x, cy + half_y)
                n_in = int(count[kk, j])
                rec: dict[str, Any] = {
                    "rank": len(rows) + 1, "index": gi, "image_id": items[gi].image_id,
                    "label": items[gi].label, "peak": round(float(peak_val[kk, j]), 5),
                    "peak_xy": [round((px + 0.5 + g.offset_x) / g.scale_x, 1),
                                round((py + 0.5 + g.offset_y) / g.scale_y, 1)],
                    "region_area": round(n_in / float(hin * win), 5),
                    "region_box": None,
                    "crop_box": _to_original(g, crop),
                }
                if n_in:
                    rb = [int(x0[kk, j]), int(y0[kk, j]), int(x1[kk, j]), int(y1[kk, j])]
                    rec["region_box"] = _to_original(g, rb)
                if len(items[gi].boxes):
                    inter_n, box_n = _overlap(mask[kk, j], g.to_input_boxes(items[gi].boxes))
                    rec["box_area"] = round(box_n / float(hin * win), 5)
                    rec["inside"] = round(inter_n / n_in, 5) if n_in else None
                    rec["coverage"] = round(inter_n / max(box_n, 1.0), 5)
                rows.append(rec)
            out.append(rows)
    return out
