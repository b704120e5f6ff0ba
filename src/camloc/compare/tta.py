"""Test-time augmentation (TTA) for any map method: horizontal flip and several input scales.

A :class:`TTA` lists the variants of each input: every scale in ``scales`` (the input resized to
``s x s``; ``None`` keeps the model's own input size), each also mirrored when ``flip`` is set.
:func:`tta_maps` runs the method on every variant and brings each variant's map back to the
input's image space: resized (bicubic) to the input's ``H x W``, mirrored back when the variant was
mirrored, and min-max normalised, so that variants whose maps have different scales count equally.
The result is their mean, a ``(N, H, W)`` map in ``[0, 1]``.

The spec text of ``--tta``: comma-separated items ``flip`` and ``scales=S1:S2:...`` (input sides
in pixels), e.g. ``flip``, ``scales=224:288``, ``flip,scales=224:288``.

>>> parse_tta("flip,scales=224:288")
TTA(flip=True, scales=(224, 288))
>>> parse_tta("flip").variants((224, 224))
[(224, 224, False), (224, 224, True)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from camloc.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where maps are made: parsing --tta stays light
    import torch

__all__ = ["TTA", "parse_tta", "tta_maps"]

MIN_SCALE = 16
MAX_SCALE = 4096


@dataclass(frozen=True)
class TTA:
    """Which variants to average: ``flip`` (add mirrored copies) and ``scales`` (input sides in
    pixels; ``None``: the model's input size only)."""

    flip: bool = False
    scales: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.scales is not None:
            if not self.scales:
                raise ConfigError("TTA scales: give at least one input size")
            for s in self.scales:
                if isinstance(s, bool) or not isinstance(s, int) or not MIN_SCALE <= s <= MAX_SCALE:
                    raise ConfigError(f"TTA scales: {s!r} is not an input size in pixels "
                                      f"({MIN_SCALE}..{MAX_SCALE})")
            if len(set(self.scales)) != len(self.scales):
                raise ConfigError(f"TTA scales: {self.scales} repeats a size")

    @property
    def active(self) -> bool:
        """Whether there is more than the plain input to average."""
        return self.flip or (self.scales is not None and len(self.scales) > 0)

    def variants(self, input_hw: tuple[int, int]) -> list[tuple[int, int, bool]]:
        """``(height, width, mirrored)`` of every variant of an input of size ``input_hw``."""
        sizes = [tuple(input_hw)] if self.scales is None else [(s, s) for s in self.scales]
        flips = (False, True) if self.flip else (False,)
        return [(int(h), int(w), f) for (h, w) in sizes for f in flips]

    def describe(self) -> str:
        """The ``--tta`` text for this TTA (``"none"`` when inactive)."""
        parts = (["flip"] if self.flip else []) + \
            ([f"scales={':'.join(map(str, self.scales))}"] if self.scales else [])
        return ",".join(parts) or "none"


def parse_tta(text: str | None) -> TTA | None:
    """Parse a ``--tta`` value (see the module docstring); ``None``, ``""`` or ``"none"`` -> None.

    Raises:
        ConfigError: an unknown item or a malformed scale list, naming the offending part.
    """
    if text is None or not str(text).strip() or str(text).strip().lower() == "none":
        return None
    flip = False
    scales: tuple[int, ...] | None = None
    for raw in str(text).split(","):
        item = raw.strip()
        low = item.lower()
        if low == "flip":
            if flip:
                raise ConfigError(f"--tta {text!r}: 'flip' given twice")
            flip = True
        elif low.startswith("scales="):
            if scales is not None:
                raise ConfigError(f"--tta {text!r}: 'scales=' given twice")
            parts = item.split("=", 1)[1].split(":")
            try:
                scales = tuple(int(p) for p in parts)
            except ValueError:
                raise ConfigError(f"--tta {text!r}: scales must be input sides in pixels joined by "
                                  f"':', e.g. scales=224:288 (got {item!r})") from None
        else:
            raise ConfigError(f"--tta {text!r}: unknown item {item!r}; expected 'flip' and/or "
                              f"'scales=S1:S2' (e.g. --tta flip,scales=224:288)")
    return TTA(flip=flip, scales=scales)


def _resize_input(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    from torch.nn import functional as F

    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    down = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=down)


def _minmax(m: torch.Tensor) -> torch.Tensor:
    from camloc.cams.postprocess import normalize

    return normalize(m, "minmax")


def tta_maps(method: Any, x: torch.Tensor, class_ids: torch.Tensor, tta: TTA
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``method`` (a camloc map method) on every variant of ``x`` for ``class_ids`` ``(N,)``.

    Returns ``(logits, maps)``: the logits of the plain input (from the variant at the input's own
    size, unmirrored, when there is one; else one extra forward) and the ``(N, H, W)`` mean of the
    variants' maps in image space (each min-max normalised), on the model's device.
    """
    import torch

    from camloc.cams.postprocess import upsample

    h, w = x.shape[-2:]
    ids = class_ids.view(-1, 1)
    total: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    variants = tta.variants((h, w))
    for vh, vw, mirrored in variants:
        xv = _resize_input(x, (vh, vw))
        if mirrored:
            xv = torch.flip(xv, dims=[-1])
        out = method(xv, classes=ids.to(out_device(method)))
        if (vh, vw) == (h, w) and not mirrored:
            logits = out.logits
        m = upsample(out.maps[:, :1].float(), (h, w), "bicubic")
        if mirrored:
            m = torch.flip(m, dims=[-1])
        m = _minmax(m)[:, 0]
        total = m if total is None else total + m
    assert total is not None  # variants is never empty
    if logits is None:
        from camloc.models.heads import eval_mode

        module = method.model.module
        with eval_mode(module), torch.no_grad():
            logits = method.model.logits(x.to(out_device(method)))
    return logits, total / len(variants)


def out_device(method: Any) -> Any:
    """The device of the method's model."""
    return method.model.device
