"""What one pass over the images accumulates, and how shards and resumed runs combine.

Everything here has a size fixed by the model (units ``K``, classes ``C``, map ``h x w``) and the
options (top images per unit), never by the number of images:

- per class (by label): the sum of each unit's pooled activation, the image count, and the sums of
  the logit and of the bias (for the exactness check ``sum_k contribution + bias == logit``);
- over all images: the sum of each unit's contribution to the predicted class's score (ranks units
  for a dataset without labels);
- :class:`~camloc.units.sketch.QuantileSketch` of each unit's activations (the region threshold);
- :class:`~camloc.units.topk.TopImages` (each unit's top images and their maps);
- the failed images and the position reached (for resuming).

``merge`` is exact for every part except the float64 sums, whose order of addition changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from camloc.errors import CheckpointError
from camloc.units.sketch import QuantileSketch
from camloc.units.topk import TopImages

__all__ = ["UnitsState", "STATE_VERSION"]

STATE_VERSION = 1


@dataclass
class UnitsState:
    """Accumulators of one (shard of a) units pass. ``meta`` identifies the run (model, data,
    options) so that a resumed run refuses a state written by a different one."""

    meta: dict[str, Any]
    class_pooled: torch.Tensor  # (C, K) float64: sum of pooled f'_k over the class's images
    class_count: torch.Tensor  # (C,) int64
    class_logit: torch.Tensor  # (C,) float64: sum of the class's own logit over its images
    class_bias: torch.Tensor  # (C,) float64: sum of the class's (per-image) bias
    pred_contrib: torch.Tensor  # (K,) float64: sum over images of W[pred, k] * pooled_k
    pooled_sum: torch.Tensor  # (K,) float64: sum over images of pooled f'_k
    sketch: QuantileSketch
    top: TopImages
    position: int = 0  # items of this shard already processed (scored or failed)
    images: int = 0  # images scored
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def empty(cls, meta: dict[str, Any], num_classes: int, units: int, map_shape: tuple[int, int],
              top_images: int, sketch_accuracy: float = 0.01) -> UnitsState:
        c, k = int(num_classes), int(units)
        f64 = torch.float64
        return cls(meta=dict(meta), class_pooled=torch.zeros(c, k, dtype=f64),
                   class_count=torch.zeros(c, dtype=torch.int64),
                   class_logit=torch.zeros(c, dtype=f64), class_bias=torch.zeros(c, dtype=f64),
                   pred_contrib=torch.zeros(k, dtype=f64), pooled_sum=torch.zeros(k, dtype=f64),
                   sketch=QuantileSketch(k, rel_accuracy=sketch_accuracy),
                   top=TopImages(k, top_images, map_shape))

    @property
    def units(self) -> int:
        return int(self.class_pooled.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.class_pooled.shape[0])

    def merge(self, other: UnitsState) -> UnitsState:
        """Add another shard's accumulators to this one (in place; returns self)."""
        for name in ("class_pooled", "class_count", "class_logit", "class_bias", "pred_contrib",
                     "pooled_sum"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine.shape != theirs.shape:
                raise CheckpointError(f"cannot merge unit states: {name} has shape "
                                      f"{tuple(mine.shape)} here and {tuple(theirs.shape)} there")
            mine += theirs.to(mine.device)
        self.sketch.merge(other.sketch)
        self.top.merge(other.top)
        self.images += other.images
        self.position += other.position
        self.failed.extend(other.failed)
        self.seconds = max(self.seconds, other.seconds)
        return self

    def to(self, device: str | torch.device) -> UnitsState:
        """Move the sketch and the top-image store (the per-batch work) to ``device``."""
        self.sketch.to(device)
        self.top.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "meta": self.meta,
                "class_pooled": self.class_pooled.cpu(), "class_count": self.class_count.cpu(),
                "class_logit": self.class_logit.cpu(), "class_bias": self.class_bias.cpu(),
                "pred_contrib": self.pred_contrib.cpu(), "pooled_sum": self.pooled_sum.cpu(),
                "sketch": self.sketch.state_dict(), "top": self.top.state_dict(),
                "position": self.position, "images": self.images, "failed": list(self.failed),
                "seconds": self.seconds}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> UnitsState:
        if d.get("version") != STATE_VERSION:
            raise CheckpointError(f"unit state version {d.get('version')!r} is not "
                                  f"{STATE_VERSION}; start over with --overwrite")
        return cls(meta=d["meta"], class_pooled=d["class_pooled"], class_count=d["class_count"],
                   class_logit=d["class_logit"], class_bias=d["class_bias"],
                   pred_contrib=d["pred_contrib"], pooled_sum=d["pooled_sum"],
                   sketch=QuantileSketch.from_state_dict(d["sketch"]),
                   top=TopImages.from_state_dict(d["top"]), position=int(d["position"]),
                   images=int(d["images"]), failed=list(d["failed"]), seconds=float(d["seconds"]))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state atomically (a crash mid-write leaves the previous state intact)."""
        from camloc.io import atomic_open

        with atomic_open(path, "wb") as fh:
            torch.save(self.state_dict(), fh)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> UnitsState:
        """Read a state written by :meth:`save` (tensors and plain data only)."""
        p = Path(path)
        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
            raise CheckpointError(f"{p}: cannot read the saved units state ({type(exc).__name__}: "
                                  f"{exc}); delete it or run with --overwrite") from exc
        if not isinstance(d, dict):
            raise CheckpointError(f"{p}: not a units state; delete it or run with --overwrite")
        try:
            return cls.from_state_dict(d)
        except KeyError as exc:
            raise CheckpointError(f"{p}: units state lacks {exc}; delete it or run with "
                                  f"--overwrite") from exc
