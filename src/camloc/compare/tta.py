"""Test-time augmentation for ``camloc compare``: the engine-level module
:mod:`camloc.cams.tta` (kept here so ``camloc.compare.tta`` imports keep working).

>>> parse_tta("flip,scales=224:288")
TTA(flip=True, scales=(224, 288), logits=False)
"""

from __future__ import annotations

from camloc.cams.tta import TTA, TTAMethod, out_device, parse_tta, tta_maps, with_tta

__all__ = ["TTA", "TTAMethod", "out_device", "parse_tta", "tta_maps", "with_tta"]
