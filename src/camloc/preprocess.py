"""How an image becomes a network's input, and the way back to the image's own pixels.

A :class:`Preprocess` describes how an image becomes the network's input and, just as important,
how to go back: :meth:`Preprocess.geometry` returns the :class:`Geometry` (affine map) between
original pixels and input pixels, which camloc uses to put maps and boxes back on the original
image. Plain data with no model in sight, so ``camloc.data`` and ``camloc.metrics`` use it without
importing ``camloc.models`` (which re-exports both classes).

>>> p = Preprocess(input_size=(224, 224), fit="stretch")
>>> g = p.geometry(width=448, height=224)
>>> g.to_original_boxes([[0, 0, 224, 224]]).tolist()
[[0.0, 0.0, 448.0, 224.0]]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from camloc.defaults import IMAGENET_MEAN, IMAGENET_STD
from camloc.errors import ConfigError

__all__ = ["Preprocess", "Geometry", "FIT_MODES", "INTERPOLATIONS"]

FIT_MODES = ("stretch", "crop")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
#: The largest side of a network input (pixels); larger inputs are refused (a model's spec.json
#: naming 100,000 x 100,000 would allocate 120 GB for one image).
MAX_INPUT_SIDE = 2048
#: The smallest ``crop_pct`` (``fit="crop"`` resizes the short side to input / crop_pct).
MIN_CROP_PCT = 0.25


@dataclass(frozen=True)
class Geometry:
    """Affine map from original image pixels to network-input pixels, per image.

    ``x_in = x_orig * scale_x - offset_x`` (same for y). Coordinates are continuous (pixel edges:
    the image spans ``[0, width]``).
    """

    width: int
    height: int
    input_width: int
    input_height: int
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_original_boxes(self, boxes: Any) -> np.ndarray:
        """Map ``(B, 4)`` boxes ``x0, y0, x1, y1`` from input pixels to original pixels, clipped."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, [0, 2]] = (b[:, [0, 2]] + self.offset_x) / self.scale_x
        out[:, [1, 3]] = (b[:, [1, 3]] + self.offset_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out

    def to_input_boxes(self, boxes: Any) -> np.ndarray:
        """Map ``(B, 4)`` boxes from original pixels to input pixels (not clipped)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, [0, 2]] = b[:, [0, 2]] * self.scale_x - self.offset_x
        out[:, [1, 3]] = b[:, [1, 3]] * self.scale_y - self.offset_y
        return out

    def input_to_original_matrix(self) -> np.ndarray:
        """2x3 affine matrix taking input pixel coordinates to original pixel coordinates."""
        return np.array(
            [[1.0 / self.scale_x, 0.0, self.offset_x / self.scale_x],
             [0.0, 1.0 / self.scale_y, self.offset_y / self.scale_y]],
            dtype=np.float64,
        )


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network input.

    - ``fit="stretch"``: resize the whole image to ``input_size`` (no crop; aspect not kept). This is
      the WSOL evaluation protocol and camloc's default for explaining, since every pixel is seen.
    - ``fit="crop"``: resize the shorter side to ``input / crop_pct`` and centre-crop ``input_size``
      (the usual ImageNet evaluation transform, as the weights' metadata describes).
    """

    input_size: tuple[int, int] = (224, 224)  # (height, width)
    fit: Literal["stretch", "crop"] = "stretch"
    crop_pct: float = 0.875
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.fit not in FIT_MODES:
            raise ConfigError(f"fit={self.fit!r}: expected one of {FIT_MODES}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation={self.interpolation!r}: expected one of {INTERPOLATIONS}")
        if not (MIN_CROP_PCT <= self.crop_pct <= 1.0):
            raise ConfigError(f"crop_pct={self.crop_pct}: expected {MIN_CROP_PCT} <= crop_pct "
                              f"<= 1")
        h, w = self.input_size
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                   and 1 <= v <= MAX_INPUT_SIDE for v in (h, w)):
            raise ConfigError(f"input_size={self.input_size}: expected (height, width), each a "
                              f"whole number from 1 to {MAX_INPUT_SIDE}")
        for key in ("mean", "std"):
            vals = getattr(self, key)
            try:
                ok = len(vals) == 3 and all(math.isfinite(float(v)) for v in vals)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigError(f"{key}={vals!r}: expected three finite numbers (one per RGB channel)")
        if any(float(s) <= 0 for s in self.std):
            raise ConfigError(f"std={self.std!r}: every value must be > 0 (inputs are divided by it)")

    def with_(self, **changes: Any) -> Preprocess:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def resize_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` the image is resized to before any crop."""
        ih, iw = self.input_size
        if self.fit == "stretch":
            return iw, ih
        short = int(math.floor(min(ih, iw) / self.crop_pct))
        if width <= height:
            return short, max(1, int(short * height / width))
        return max(1, int(short * width / height)), short

    def geometry(self, width: int, height: int) -> Geometry:
        """The affine map from an original ``width x height`` image to the input."""
        ih, iw = self.input_size
        rw, rh = self.resize_size(width, height)
        off_x = (rw - iw) / 2.0 if self.fit == "crop" else 0.0
        off_y = (rh - ih) / 2.0 if self.fit == "crop" else 0.0
        # torchvision's CenterCrop rounds the offset: int(round((rh - ih) / 2.0)).
        off_x, off_y = float(int(round(off_x))), float(int(round(off_y)))
        return Geometry(width, height, iw, ih, rw / width, rh / height, off_x, off_y)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        known = {k: d[k] for k in ("fit", "crop_pct", "interpolation") if k in d}
        return cls(
            input_size=tuple(d.get("input_size", (224, 224))),  # type: ignore[arg-type]
            mean=tuple(d.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
            std=tuple(d.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
            **known,
        )
