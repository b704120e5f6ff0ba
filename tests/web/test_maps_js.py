"""The page's JavaScript (static/maps.js), run in Chromium, against the library it mirrors.

The threshold slider redraws boxes in the browser, so the browser's boxes must be exactly
:func:`camloc.localize.boxes_from_map`'s (same boxes, same order of components), placed in original
pixels exactly as :meth:`Geometry.to_original_boxes` does; the point lookup must read the same
values as :func:`camloc.cams.upsample` (bicubic) at that pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camloc.cams import upsample
from camloc.localize import boxes_from_map
from camloc.models.spec import Preprocess
from camloc.web.encode import encode_maps, encode_raw_maps

THRESHOLDS = (0.0, 0.2, 0.37, 0.5, 0.81, 1.0)


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    m = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 5)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(0.5, max(h, w) / 2)
        m += np.float32(rng.uniform(-0.5, 1.0)) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return m.astype(np.float32)


def _maps(rng: np.random.Generator) -> list[np.ndarray]:
    """Maps that exercise the rule's corners: ties, equal-area components, boundary values,
    NaN, non-positive maxima, single rows and pixels."""
    out: list[np.ndarray] = []
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 41, 2))
        out.append(_smooth(rng, h, w))
    for _ in range(60):  # few distinct values: many ties and equal-area components
        h, w = (int(v) for v in rng.integers(1, 33, 2))
        out.append(rng.choice(np.array([0, 0.1, 0.5, 1.0], np.float32), size=(h, w)).astype(np.float32))
    for _ in range(20):  # sparse dots: many 1-pixel components, order decided by OpenCV's labels
        h, w = (int(v) for v in rng.integers(4, 40, 2))
        out.append((rng.random((h, w)) < 0.15).astype(np.float32) * np.float32(0.9))
    # values exactly at and one ulp around float32(t * max), for each threshold
    for t in THRESHOLDS:
        m = rng.random((9, 11)).astype(np.float32)
        m[4, 5] = 1.0
        cut = np.float32(t * 1.0)
        m[0, 0], m[0, 10] = cut, np.nextafter(cut, np.float32(2))
        m[8, 0], m[8, 10] = np.nextafter(cut, np.float32(-2)), cut
        out.append(m)
    m = np.full((5, 5), np.float32(0.2))  # float32(0.2) > 0.2 in float64, not in float32
    m[2, 2] = 1.0
    out.append(m)
    nan = rng.random((6, 6)).astype(np.float32)
    nan[3, 3] = np.nan
    out += [nan, np.zeros((5, 7), np.float32), -rng.random((6, 4)).astype(np.float32),
            np.full((3, 8), np.float32(0.7)), np.ones((1, 1), np.float32), rng.random((1, 17)).astype(np.float32),
            rng.random((13, 1)).astype(np.float32)]
    return out


def test_js_boxes_equal_boxes_from_map(js_page, rng):
    maps = _maps(rng)
    cases = [{"map": m.ravel().tolist(), "w": m.shape[1], "h": m.shape[0]} for m in maps]
    got = js_page.evaluate(
        """([cases, thresholds]) => cases.map(c => thresholds.map(t => [
               CamlocMaps.boxesFromMap(Float32Array.from(c.map), c.w, c.h, t, false),
               CamlocMaps.boxesFromMap(Float32Array.from(c.map), c.w, c.h, t, true)]))""",
        [cases, list(THRESHOLDS)])
    checked = multi_boxes = 0
    for m, per_t in zip(maps, got):
        for t, (largest, every) in zip(THRESHOLDS, per_t):
            want_largest = boxes_from_map(m, t).tolist()
            want_every = boxes_from_map(m, t, multi=True).tolist()
            assert largest == want_largest, (m.shape, t)
            assert every == want_every, (m.shape, t)
            checked += 1
            multi_boxes += len(want_every) > 1
    assert checked == len(maps) * len(THRESHOLDS)
    assert multi_boxes > 100  # the order of several components was really compared


@pytest.mark.slow
def test_js_boxes_on_real_maps(js_page, default_model, samples_dir):
    """Maps of the real model at input resolution, as the page receives them (float16)."""
    from camloc.explain import explain

    exps = explain(default_model, sorted(samples_dir.glob("*.jpg")), top_k=2)
    maps = [encode_maps(e.maps, "f16")[1] for e in exps]
    planes = [p for m in maps for p in m]
    h, w = planes[0].shape
    thresholds = [0.05, 0.2, 0.35, 0.6, 0.9]
    got = js_page.evaluate(
        """([planes, w, h, ts]) => planes.map(p => ts.map(t =>
               CamlocMaps.boxesFromMap(Float32Array.from(p), w, h, t, true)))""",
        [[p.ravel().tolist() for p in planes], w, h, thresholds])
    for p, per_t in zip(planes, got):
        for t, every in zip(thresholds, per_t):
            assert every == boxes_from_map(p, t, multi=True).tolist()


def test_js_geometry_equals_to_original_boxes(js_page, rng):
    cases = []
    for _ in range(40):
        fit = "crop" if rng.random() < 0.5 else "stretch"
        pre = Preprocess(input_size=(int(rng.integers(32, 300)), int(rng.integers(32, 300))), fit=fit)
        width, height = (int(v) for v in rng.integers(20, 2000, 2))
        g = pre.geometry(width, height)
        boxes = np.sort(rng.uniform(-5, 310, (5, 4)).reshape(5, 2, 2), axis=1).transpose(0, 2, 1).reshape(5, 4)
        boxes = boxes[:, [0, 2, 1, 3]]
        cases.append((g, boxes))
    got = js_page.evaluate(
        "(cases) => cases.map(c => CamlocMaps.toOriginalBoxes(c.boxes, c.g, c.width, c.height))",
        [{"g": {"scale_x": g.scale_x, "scale_y": g.scale_y, "offset_x": g.offset_x,
                "offset_y": g.offset_y}, "width": g.width, "height": g.height, "boxes": b.tolist()}
         for g, b in cases])
    for (g, b), js in zip(cases, got):
        assert js == g.to_original_boxes(b).tolist()


def test_js_decodes_float16_exactly(js_page, rng):
    vals = np.concatenate([rng.normal(0, 1, 500), rng.normal(0, 1e-6, 50), rng.normal(0, 3e4, 20),
                           [0.0, -0.0, 6e-8, 65504.0, -65504.0, 1e6, np.nan]]).astype(np.float32)
    payload, decoded = encode_maps(vals.reshape(1, 1, -1), "f16")
    got = js_page.evaluate("(b64) => Array.from(CamlocMaps.decodeF16(b64))", payload["data"])
    assert got == decoded.ravel().tolist()
    payload32, _ = encode_maps(vals[np.isfinite(vals)].reshape(1, 1, -1), "f32")
    got32 = js_page.evaluate("(b64) => Array.from(CamlocMaps.decodeF32(b64))", payload32["data"])
    assert got32 == vals[np.isfinite(vals)].tolist()


def test_js_png_maps_decode_to_the_servers_values(js_page, rng):
    m = rng.random((2, 20, 30)).astype(np.float32)
    payload, decoded = encode_maps(m, "png")
    got = js_page.evaluate("(p) => CamlocMaps.decodeMaps(p).then(ps => ps.map(x => Array.from(x)))",
                           payload)
    assert got == [d.ravel().tolist() for d in decoded]


@pytest.mark.parametrize("shape,size", [((6, 7, 7), (224, 224)), ((4, 5, 9), (64, 100))])
def test_js_point_values_equal_bicubic_upsampling(js_page, rng, shape, size):
    raw = rng.normal(0, 5, shape).astype(np.float32)
    flat = encode_raw_maps(raw)
    sent = np.frombuffer(__import__("base64").b64decode(flat["data"]), "<f2").astype(np.float32)
    up = upsample(torch.from_numpy(sent.reshape(1, *shape)), size, "bicubic")[0].numpy()
    pts = [(0, 0), (size[1] - 1, size[0] - 1), (13, 37), (size[1] // 2, size[0] // 3), (1, size[0] - 2)]
    got = js_page.evaluate(
        """([b64, shape, H, W, pts]) => {
               const flat = CamlocMaps.decodeF16(b64);
               return pts.map(p => Array.from(CamlocMaps.valuesAt(flat, shape, H, W, p[0], p[1])));
           }""", [flat["data"], list(shape), size[0], size[1], pts])
    scale = float(np.abs(up).max())
    for (px, py), vals in zip(pts, got):
        np.testing.assert_allclose(vals, up[:, py, px], rtol=0, atol=2e-6 * scale)


def test_js_point_ranking_matches_python(js_page, rng):
    """Original-image point -> input pixel -> the classes with the highest upsampled maps."""
    raw = rng.normal(0, 5, (50, 7, 7)).astype(np.float32)
    payload = encode_raw_maps(raw)
    sent = np.frombuffer(__import__("base64").b64decode(payload["data"]), "<f2").astype(np.float32)
    up = upsample(torch.from_numpy(sent.reshape(1, 50, 7, 7)), (224, 224), "bicubic")[0].numpy()
    for fit in ("stretch", "crop"):
        g = Preprocess(fit=fit).geometry(451, 300)
        gd = {k: getattr(g, k) for k in ("scale_x", "scale_y", "offset_x", "offset_y", "input_width",
                                          "input_height")}
        pts = [(10.5, 20.25), (225.0, 150.0), (440.9, 299.0), (0.0, 0.0)]
        got = js_page.evaluate(
            """([b64, g, pts]) => {
                   const flat = CamlocMaps.decodeF16(b64);
                   return pts.map(p => CamlocMaps.pointRanking(flat, [50, 7, 7], g, p[0], p[1], 5));
               }""", [payload["data"], gd, pts])
        for (x, y), ranking in zip(pts, got):
            xi, yi = int(np.floor(x * g.scale_x - g.offset_x)), int(np.floor(y * g.scale_y - g.offset_y))
            if not (0 <= xi < 224 and 0 <= yi < 224):
                assert ranking == []  # outside the centre crop: the network did not see it
                continue
            want = np.argsort(-up[:, yi, xi], kind="stable")[:5].tolist()
            assert [r["id"] for r in ranking] == want


def test_heatmap_colour_and_opacity_rise_together(js_page):
    """Issue #23.4: zero-valued pixels were transparent while weak values were opaque dark blue,
    so untouched bright photo pixels looked like hot spots. Now opacity rises with the value from
    0 (transparent): a weak value is almost as transparent as a zero."""
    px = js_page.evaluate("""() => {
        const m = new Float32Array([0, 0.01, 0.1, 0.5, 1, NaN]);
        return Array.from(CamlocMaps.heatmapPixels(m, 6, 1));
    }""")
    alpha = px[3::4]
    assert alpha[0] == 0 and alpha[5] == 0  # zero and NaN: transparent
    assert alpha[1] <= 32  # weak: nearly transparent, not an opaque dark blue
    assert alpha == sorted(alpha[:5]) + [0] and alpha[4] == 255
    opaque = js_page.evaluate("() => Array.from(CamlocMaps.heatmapPixels("
                              "new Float32Array([0, 0.01]), 2, 1, true))")
    assert opaque[3] == 255 and opaque[7] == 255 and opaque[:3] == px[:3]  # the raw-map view
