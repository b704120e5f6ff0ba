"""The overlay drawing is fast and draws the same pixels as the straightforward composition.

``_reference_*`` below is the drawing as it was before it was made fast (float32 blending, OpenCV's
colour map on every call, one PIL image per panel pasted into a grid): every overlay must stay
pixel for pixel what it drew.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from camloc.models.spec import Geometry

ov = importlib.import_module("camloc.viz.overlay")  # camloc.viz.overlay is also the function


def _reference_heatmap(m: np.ndarray) -> np.ndarray:
    m = np.nan_to_num(np.asarray(m, np.float32)).clip(0, 1)
    return cv2.cvtColor(cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET),
                        cv2.COLOR_BGR2RGB)


def _reference_overlay(image, scoremap, box=None, label=None, alpha=0.5, gt_boxes=None):
    rgb = np.asarray(image.convert("RGB"), np.float32)
    blend = (1 - alpha) * rgb + alpha * _reference_heatmap(scoremap).astype(np.float32)
    out = Image.fromarray(blend.clip(0, 255).astype(np.uint8))
    lw = max(2, round(min(out.size) / 150))
    for boxes, color in ((gt_boxes, ov.BOX_GT), ([box] if box is not None else None, ov.BOX_PRED)):
        if boxes is not None:
            out = ov.draw_boxes(out, boxes, color, lw)
    if label:
        d = ImageDraw.Draw(out)
        font = ImageFont.load_default(size=max(12, min(out.size) // 16))
        x0, y0, x1, y1 = d.textbbox((0, 0), label, font=font)
        d.rectangle([0, 0, x1 - x0 + 8, y1 - y0 + 8], fill=(0, 0, 0))
        d.text((4 - x0, 4 - y0), label, fill=(255, 255, 255), font=font)
    return out


def _reference_render(image, exp, max_side=2048, max_panels=8):
    n = min(len(exp.class_ids), max_panels)
    dw, dh = ov.overlay_size(exp, max_side, max_panels)
    small = image if (dw, dh) == image.size else image.resize((dw, dh), Image.Resampling.BILINEAR,
                                                              reducing_gap=2.0)
    sx, sy = dw / exp.width, dh / exp.height
    panels = []
    for j in range(n):
        x0, y0, x1, y1 = (float(v) for v in exp.boxes[j])
        panels.append(_reference_overlay(
            small, ov.map_at_size(exp, j, dw, dh), box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy),
            label=f"{exp.class_names[j].split(',')[0]} {exp.probs[j]:.2f}"))
    return panels[0] if n == 1 else ov.overlay_grid(panels, max_height=dh)


def _explanation(rng, w, h, k, crop=False, nan=False):
    """An explanation-like object: k smooth random maps at 32 x 32 input, boxes, geometry."""
    if crop:  # resize the short side to 36, centre crop 32
        s = 36 / min(w, h)
        g = Geometry(w, h, 32, 32, s, s, (w * s - 32) / 2, (h * s - 32) / 2)
    else:
        g = Geometry(w, h, 32, 32, 32 / w, 32 / h, 0.0, 0.0)
    maps = cv2.GaussianBlur(rng.random((32, 32, k)).astype(np.float32), (0, 0), 3)
    maps = np.ascontiguousarray(maps.reshape(32, 32, k).transpose(2, 0, 1))
    maps /= maps.reshape(k, -1).max(1)[:, None, None]
    if nan:
        maps[0, :4, :4] = np.nan
        maps[-1, 5, :3] = [np.inf, -np.inf, -0.5]
    x0 = rng.uniform(0, w / 2, k)
    y0 = rng.uniform(0, h / 2, k)
    boxes = np.stack([x0, y0, x0 + rng.uniform(1, w / 2, k), y0 + rng.uniform(1, h / 2, k)], 1)
    return SimpleNamespace(width=w, height=h, geometry=g, maps=maps, boxes=boxes,
                           class_ids=list(range(k)),
                           class_names=[f"class {j}, long name" for j in range(k)],
                           probs=list(rng.random(k)))


@pytest.mark.parametrize("w,h,k,crop,nan,max_side,max_panels", [
    (227, 227, 5, False, False, 2048, 8),   # the dev photos' top-5 grid
    (227, 227, 1, False, False, 2048, 8),   # top-1: one panel
    (640, 480, 3, True, True, 2048, 8),     # centre crop (warped maps), NaN and infinite values
    (1200, 300, 8, False, False, 2048, 8),  # panels scaled down to fit 2048
    (300, 500, 6, True, False, 400, 4),     # small max_side, panels capped
    (31, 17, 2, False, False, 2048, 8),     # tinier than its label
])
def test_render_explanation_draws_the_reference_pixels(w, h, k, crop, nan, max_side, max_panels):
    rng = np.random.default_rng(w * 1000 + h + k)
    exp = _explanation(rng, w, h, k, crop, nan)
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    want = np.asarray(_reference_render(image, exp, max_side, max_panels))
    got = np.asarray(ov.render_explanation(image, exp, max_side, max_panels))
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_heatmap_rgb_is_opencvs_jet_with_nan_and_out_of_range_values():
    m = np.random.default_rng(1).normal(0.5, 0.8, (40, 50)).astype(np.float32)
    m[0, :6] = [np.nan, np.inf, -np.inf, 1.0, 0.0, 255.0]
    assert np.array_equal(ov.heatmap_rgb(m), _reference_heatmap(m))
    assert np.array_equal(ov.heatmap_rgb(m.astype(np.float64)), _reference_heatmap(m))
    before = m.copy()
    ov.heatmap_rgb(m)
    assert np.array_equal(m, before, equal_nan=True)  # the input is not touched


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.75, 0.0, 1.0])
def test_overlay_blends_as_the_float_formula(alpha):
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    m = rng.random((48, 64)).astype(np.float32)
    kw = dict(box=(3, 4, 40, 30), label="thing 0.50", alpha=alpha, gt_boxes=[(1, 1, 20, 20)])
    assert np.array_equal(np.asarray(ov.overlay(image, m, **kw)),
                          np.asarray(_reference_overlay(image, m, **kw)))
