"""Maps on the wire, and boxes computed on exactly the values sent.

A map travels as ``f16`` (little-endian float16, base64; the default), ``f32`` (float32, exact)
or ``png`` (8-bit grayscale, one PNG per map, value ``round(255 * clip(m, 0, 1))``). The server
computes its boxes with :func:`camloc.localize.boxes_from_map` on the *decoded* payload, so the
page, which re-thresholds the same values in JavaScript, draws the boxes the library would; with
``f32`` they are also exactly ``camloc explain``'s.

>>> import numpy as np
>>> m = np.zeros((1, 4, 4), np.float32); m[0, 1:3, 1:3] = 1
>>> payload, decoded = encode_maps(m, "f16")
>>> payload["shape"], payload["dtype"], bool((decoded == m).all())
([1, 4, 4], 'float16', True)
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from camloc.errors import ConfigError

__all__ = ["MAP_ENCODINGS", "encode_maps", "encode_raw_maps", "boxes_on_sent_map", "box_list"]

MAP_ENCODINGS = ("f16", "f32", "png", "none")
_F16_MAX = 65504.0


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def encode_maps(maps: np.ndarray, encoding: str) -> tuple[dict[str, Any] | None, np.ndarray]:
    """Encode ``(k, H, W)`` normalised maps; return ``(payload, decoded float32 maps)``.

    ``payload`` is ``None`` for ``"none"`` (the decoded maps are then the float32 input).
    """
    m = np.ascontiguousarray(maps, dtype=np.float32)
    shape = [int(s) for s in m.shape]
    if encoding == "none":
        return None, m
    if encoding == "f32":
        return {"encoding": "f32", "dtype": "float32", "shape": shape,
                "data": _b64(m.astype("<f4").tobytes())}, m
    if encoding == "f16":
        h = np.nan_to_num(m, nan=0.0).clip(-_F16_MAX, _F16_MAX).astype("<f2")
        return {"encoding": "f16", "dtype": "float16", "shape": shape,
                "data": _b64(h.tobytes())}, h.astype(np.float32)
    if encoding == "png":
        from PIL import Image

        q = np.rint(np.nan_to_num(m, nan=0.0).clip(0.0, 1.0) * 255.0).astype(np.uint8)
        pngs = []
        for plane in q:
            buf = io.BytesIO()
            Image.fromarray(plane, "L").save(buf, format="PNG", optimize=False)
            pngs.append("data:image/png;base64," + _b64(buf.getvalue()))
        # float64 division then float32 rounding: what the page computes (Math.fround(v / 255))
        decoded = (q.astype(np.float64) / 255.0).astype(np.float32)
        return {"encoding": "png", "dtype": "uint8/255", "shape": shape, "png": pngs}, decoded
    raise ConfigError(f"maps={encoding!r}: expected one of {', '.join(MAP_ENCODINGS)}")


def encode_raw_maps(maps: np.ndarray) -> dict[str, Any]:
    """Raw (unnormalised) ``(C, h, w)`` maps as float16 base64, for the page's point lookup."""
    h = np.nan_to_num(np.asarray(maps, np.float32), nan=0.0).clip(-_F16_MAX, _F16_MAX).astype("<f2")
    return {"encoding": "f16", "dtype": "float16", "shape": [int(s) for s in h.shape],
            "data": _b64(np.ascontiguousarray(h).tobytes())}


def box_list(box: Any) -> list[float]:
    return [float(v) for v in box]


def boxes_on_sent_map(decoded: np.ndarray, threshold: float, multi: bool,
                      geometry: Any) -> tuple[list[float], list[list[float]] | None]:
    """The largest component's box (and every component's, with ``multi``) of one decoded map,
    in original image pixels (continuous edges, ``x0, y0, x1, y1``)."""
    from camloc.localize import boxes_from_map

    largest = geometry.to_original_boxes(boxes_from_map(decoded, threshold))[0]
    comps = None
    if multi:
        comps = [box_list(b) for b in geometry.to_original_boxes(
            boxes_from_map(decoded, threshold, multi=True))]
    return box_list(largest), comps
