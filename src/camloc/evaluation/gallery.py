"""Best/worst localization galleries for reports (re-renders only the handful of images shown)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from camloc.data.images import load_image
from camloc.errors import ImageError

__all__ = ["pick_extremes", "render_gallery", "eval_box_to_pixels", "readable_samples"]


def readable_samples(rows: Iterable[dict[str, Any]], dataset: Any
                     ) -> Iterator[tuple[int, dict[str, Any], Any, Any]]:
    """``(position, row, sample, image)`` for each row (a per-image record with an ``image_id``)
    whose sample is in ``dataset`` and whose image can be read; the others are skipped (a gallery
    shows what it can)."""
    by_id = {s.image_id: s for s in dataset.samples}
    for k, row in enumerate(rows):
        sample = by_id.get(row.get("image_id"))
        if sample is None:
            continue
        try:
            image = load_image(sample.path)
        except ImageError:
            continue
        yield k, row, sample, image


def eval_box_to_pixels(box: Sequence[float], width: int, height: int, eval_size: float = 224
                       ) -> tuple[float, float, float, float]:
    """A predicted box of ``evaluate`` (inclusive pixel corners at ``eval_size x eval_size``, as
    wsolevaluation boxes them) in the original image's continuous pixel coordinates: the pixel
    ``x1`` ends at ``x1 + 1``.

    >>> eval_box_to_pixels([0, 0, 223, 111], 448, 224)
    (0.0, 0.0, 448.0, 112.0)
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    sx, sy = width / float(eval_size), height / float(eval_size)
    return (x0 * sx, y0 * sy, (x1 + 1) * sx, (y1 + 1) * sy)


def pick_extremes(records: Sequence[dict[str, Any]], n: int) -> list[tuple[str, dict[str, Any]]]:
    """The ``n`` best and ``n`` worst per-image records by IoU, tagged "best"/"worst"."""
    recs = [r for r in records if r.get("iou") is not None]
    if not recs or n <= 0:
        return []
    order = sorted(recs, key=lambda r: (-float(r["iou"]), str(r.get("image_id"))))
    best = order[:n]
    worst = [r for r in order[::-1][:n] if r not in best]
    return [("best", r) for r in best] + [("worst", r) for r in worst]


def render_gallery(picks: Sequence[tuple[str, dict[str, Any]]], dataset: Any,
                   scoremap_for: Callable[[Any], np.ndarray | None], eval_size: int = 224
                   ) -> list[dict[str, Any]]:
    """Overlays for the picked records: heatmap, GT boxes (red) and the predicted box (green).

    ``scoremap_for(sample)`` returns the ``eval_size`` score map of that sample (recomputed by
    the model, or read from a maps folder).
    """
    from camloc.viz import BOX_GT, draw_boxes, overlay

    out = []
    for k, rec, sample, image in readable_samples([rec for _, rec in picks], dataset):
        group = picks[k][0]
        sm = scoremap_for(sample)
        if sm is None:
            continue
        w, h = image.size
        box = rec.get("box")
        pred = eval_box_to_pixels(box, w, h, eval_size) if box is not None else None
        img = overlay(image, sm, box=pred, gt_boxes=[tuple(b) for b in sample.boxes])
        img = draw_boxes(img, [tuple(b) for b in sample.boxes], BOX_GT, max(2, round(min(w, h) / 150)))
        out.append({"group": group, "image": img,
                    "title": f"{sample.image_id}  IoU {float(rec['iou']):.2f}"})
    return out
