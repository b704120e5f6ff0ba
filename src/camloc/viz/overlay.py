"""Overlays people look at: a heatmap over the photo, the box, the class name and probability.

>>> import numpy as np
>>> from PIL import Image
>>> img = Image.new("RGB", (64, 48))
>>> heat = np.zeros((48, 64), np.float32); heat[10:30, 20:40] = 1
>>> overlay(img, heat, box=(20, 10, 40, 30), label="thing 0.90").size
(64, 48)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["overlay", "overlay_grid", "heatmap_rgb", "draw_boxes", "map_at_size",
           "overlay_size", "render_explanation"]

BOX_PRED = (0, 255, 0)
BOX_GT = (255, 64, 64)
GRID_PANEL_HEIGHT = 320  # panels of a multi-class overlay are at most this high


def _jet_table() -> np.ndarray:
    """OpenCV's JET colormap as a ``(256, 3)`` uint8 RGB table."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_JET)
    return np.ascontiguousarray(bgr[:, 0, ::-1])


#: ``cv2.applyColorMap(.., COLORMAP_JET)`` is a lookup in this table, made once (OpenCV makes it
#: again on every call).
_JET_RGB = _jet_table()


def heatmap_rgb(scoremap: np.ndarray) -> np.ndarray:
    """Colour a ``[0, 1]`` map with the JET colormap -> ``(H, W, 3)`` uint8 RGB: value ``v`` gets
    colour ``int(v * 255)``; NaN and values below 0 count as 0, values above 1 as 1."""
    m = np.asarray(scoremap, np.float32)
    idx = np.fmax(m, np.float32(0.0))  # fmax drops NaN: nan_to_num + clip in one pass
    np.fmin(idx, np.float32(1.0), out=idx)
    idx *= np.float32(255.0)
    return np.take(_JET_RGB, idx.astype(np.uint8), axis=0)


def _blend(rgb: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * rgb + alpha * heat`` of two uint8 pictures in float32, clipped, truncated
    to uint8. At ``alpha = 0.5`` that float sum is exact, so integer arithmetic gives the same
    pixels (several times faster)."""
    if alpha == 0.5:
        s = np.add(rgb, heat, dtype=np.uint16)
        s >>= 1
        return s.astype(np.uint8)
    out = (1 - alpha) * rgb.astype(np.float32) + alpha * heat.astype(np.float32)
    return out.clip(0, 255).astype(np.uint8)


_FONTS = threading.local()  # a FreeType face is not shared between threads


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` pixels (loaded once per size and thread)."""
    cache = getattr(_FONTS, "by_size", None)
    if cache is None:
        cache = _FONTS.by_size = {}
    font = cache.get(size)
    if font is None:
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1
            font = ImageFont.load_default()
        cache[size] = font
    return font


def draw_boxes(image: Image.Image, boxes: Sequence[Sequence[float]], color: tuple[int, int, int],
               width: int = 2) -> Image.Image:
    """Draw ``x0, y0, x1, y1`` boxes (continuous edges) on a copy of ``image``."""
    out = image.copy()
    _draw_boxes_on(ImageDraw.Draw(out), boxes, color, width)
    return out


def _draw_boxes_on(d: ImageDraw.ImageDraw, boxes: Sequence[Sequence[float]],
                   color: tuple[int, int, int], width: int) -> None:
    for b in boxes:
        x0, y0, x1, y1 = (float(v) for v in b)
        if x1 <= x0 or y1 <= y0:
            continue
        d.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=width)


def overlay(image: Image.Image, scoremap: np.ndarray, box: Sequence[float] | None = None,
            label: str | None = None, alpha: float = 0.5,
            gt_boxes: Sequence[Sequence[float]] | None = None) -> Image.Image:
    """Blend a ``[0, 1]`` map (at the image's size) over ``image``; draw the box and a label."""
    rgb = np.asarray(image.convert("RGB"))
    if scoremap.shape != rgb.shape[:2]:
        scoremap = cv2.resize(np.asarray(scoremap, np.float32), (rgb.shape[1], rgb.shape[0]),
                              interpolation=cv2.INTER_LINEAR)
    out = Image.fromarray(_blend(rgb, heatmap_rgb(scoremap), alpha))
    return _decorate(out, box, label, gt_boxes)


def _decorate(out: Image.Image, box: Sequence[float] | None, label: str | None,
              gt_boxes: Sequence[Sequence[float]] | None = None) -> Image.Image:
    """Draw the ground-truth boxes, then the box, then the label on ``out`` (in place)."""
    lw = max(2, round(min(out.size) / 150))
    if gt_boxes is not None or box is not None:
        d = ImageDraw.Draw(out)
        if gt_boxes is not None:
            _draw_boxes_on(d, gt_boxes, BOX_GT, lw)
        if box is not None:
            _draw_boxes_on(d, [box], BOX_PRED, lw)
    if label:
        out = _labelled(out, label)
    return out


def _labelled(out: Image.Image, label: str) -> Image.Image:
    """Write ``label`` white on black in the top-left corner of ``out`` (in place)."""
    d = ImageDraw.Draw(out)
    font = _font(max(12, min(out.size) // 16))
    x0, y0, x1, y1 = d.textbbox((0, 0), label, font=font)
    d.rectangle([0, 0, x1 - x0 + 8, y1 - y0 + 8], fill=(0, 0, 0))
    d.text((4 - x0, 4 - y0), label, fill=(255, 255, 255), font=font)
    return out


def overlay_grid(panels: Sequence[Image.Image], max_height: int = 320) -> Image.Image:
    """Put panels side by side, each scaled to at most ``max_height`` pixels high."""
    scaled = []
    for p in panels:
        if p.height > max_height:
            p = p.resize((max(1, round(p.width * max_height / p.height)), max_height),
                         Image.Resampling.BILINEAR)
        scaled.append(p)
    gap = 4
    w = sum(p.width for p in scaled) + gap * (len(scaled) - 1)
    h = max(p.height for p in scaled)
    grid = Image.new("RGB", (w, h), (255, 255, 255))
    x = 0
    for p in scaled:
        grid.paste(p, (x, 0))
        x += p.width + gap
    return grid


def map_at_size(exp: Any, j: int, width: int, height: int) -> np.ndarray:
    """Map ``j`` of ``exp`` (a :class:`camloc.Explanation`) resampled onto a ``width x height``
    picture of the original image: the original pixel grid scaled, pixels the network did not see
    (outside a centre crop) 0. At the original size it equals ``exp.map_in_original(j)``, without
    ever making a map that large."""
    g = exp.geometry
    m = np.asarray(exp.maps[j], np.float32)
    if g.offset_x == 0 and g.offset_y == 0:
        return cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
    fx, fy = width / exp.width, height / exp.height
    sx, sy = g.scale_x / fx, g.scale_y / fy  # display pixel -> input pixel
    mat = np.array([[sx, 0, 0.5 * sx - g.offset_x - 0.5],
                    [0, sy, 0.5 * sy - g.offset_y - 0.5]], np.float64)
    return cv2.warpAffine(m, mat, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def overlay_size(exp: Any, max_side: int = 2048, max_panels: int = 8) -> tuple[int, int]:
    """``(width, height)`` of one panel of :func:`render_explanation`'s picture of ``exp``: the
    original image (``exp.width x exp.height``) scaled down so that the whole picture (up to
    ``max_panels`` panels side by side, each at most :data:`GRID_PANEL_HEIGHT` high when there
    are several) fits ``max_side`` pixels; never scaled up."""
    n = max(1, min(len(exp.class_ids), max_panels))
    w, h = int(exp.width), int(exp.height)
    f = min(1.0, max_side / max(w, h))
    if n > 1:
        gaps = 4 * (n - 1)
        f = min(f, GRID_PANEL_HEIGHT / h, max(1.0, max_side - gaps) / (n * w))
    return max(1, int(w * f + 1e-6)), max(1, int(h * f + 1e-6))  # floor: never past the bound


def render_explanation(image: Image.Image, exp: Any, max_side: int = 2048,
                       max_panels: int = 8) -> Image.Image:
    """The overlay PNG of one explanation: one panel per class (at most ``max_panels``), the
    whole picture at most ``max_side`` pixels on its longest side (the photo is scaled down
    first, so a huge photo costs no more than a small one). ``image`` may have been decoded
    reduced: the picture's size and the boxes come from the original size (``exp.width`` x
    ``exp.height``). An explanation without classes (all dropped by a probability floor) is the
    photo with a note."""
    n = min(len(exp.class_ids), max_panels)
    dw, dh = overlay_size(exp, max_side, max_panels)
    small = image if (dw, dh) == image.size else image.resize((dw, dh), Image.Resampling.BILINEAR,
                                                              reducing_gap=2.0)
    if n == 0:
        return _labelled(small.convert("RGB"), "no class above the probability floor")
    rgb = np.asarray(small.convert("RGB"))
    sx, sy = dw / exp.width, dh / exp.height
    gap = 4  # as overlay_grid (whose panels here are all dh high: none is scaled)
    grid = None if n == 1 else np.full((dh, n * dw + gap * (n - 1), 3), 255, np.uint8)
    for j in range(n):
        label = f"{exp.class_names[j].split(',')[0]} {exp.probs[j]:.2f}"
        x0, y0, x1, y1 = (float(v) for v in exp.boxes[j])
        box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        heat = heatmap_rgb(map_at_size(exp, j, dw, dh))
        panel = _decorate(Image.fromarray(_blend(rgb, heat, 0.5)), box, label)
        if grid is None:
            return panel
        x = j * (dw + gap)
        grid[:, x:x + dw] = np.asarray(panel)
    return Image.fromarray(grid)
