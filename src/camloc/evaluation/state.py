"""The accumulators of one evaluation (or one shard of it) and their exact merge.

``evaluate`` and ``score`` fill an :class:`EvalState` batch by batch (counts per threshold, one
small record per image), so memory does not grow with the maps. Shards (``torchrun`` ranks,
``score --workers`` processes) are combined with :func:`merge_states`; merging is exact: the
merged figures are those one process would have computed.

>>> from camloc.metrics import ClassificationAccumulator
>>> a = EvalState(ClassificationAccumulator(), None, None, images=2)
>>> b = EvalState(ClassificationAccumulator(), None, None, images=3)
>>> merge_states([a, b]).images
5
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EvalState", "merge_states"]


@dataclass
class EvalState:
    """Accumulators of one (shard of an) evaluation.

    Attributes:
        classification: a :class:`~camloc.metrics.ClassificationAccumulator`.
        localization: a :class:`~camloc.metrics.LocalizationAccumulator` (``None``: no boxes).
        pxap: a :class:`~camloc.metrics.PxAPAccumulator` (``None``: no masks).
        failed: one ``{"path", "image_id", "error"}`` record per image that could not be scored.
        images: images scored.
        seconds: wall time of the scoring loop (the longest shard's after a merge).
        ids, labels, top1, top5: per scored image, in scoring order: the image id, its class,
            and whether the model's top-1 / top-5 classes contain it (``evaluate`` only; about
            10 bytes per image plus the id).
    """

    classification: Any
    localization: Any | None
    pxap: Any | None
    failed: list[dict[str, str]] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0
    ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    top1: list[bool] = field(default_factory=list)
    top5: list[bool] = field(default_factory=list)

    def add_images(self, ids: Sequence[str], labels: Sequence[int], top1: np.ndarray,
                   top5: np.ndarray) -> None:
        """Record the classification outcome of a scored batch (for per-image records)."""
        self.ids.extend(str(i) for i in ids)
        self.labels.extend(int(v) for v in labels)
        self.top1.extend(bool(v) for v in np.asarray(top1).reshape(-1))
        self.top5.extend(bool(v) for v in np.asarray(top5).reshape(-1))

    def merge(self, other: EvalState) -> EvalState:
        """Add ``other``'s counts and records to this state (in place); returns ``self``."""
        self.classification.merge(other.classification)
        if self.localization is not None and other.localization is not None:
            self.localization.merge(other.localization)
        if self.pxap is not None and other.pxap is not None:
            self.pxap.merge(other.pxap)
        self.failed.extend(other.failed)
        self.images += other.images
        self.seconds = max(self.seconds, other.seconds)
        self.ids.extend(other.ids)
        self.labels.extend(other.labels)
        self.top1.extend(other.top1)
        self.top5.extend(other.top5)
        return self

    def records(self) -> Iterator[dict[str, Any]]:
        """Per scored image: ``image_id``, ``label``, ``top1_correct``, ``top5_correct`` and,
        when the dataset has boxes, ``iou`` (of the largest-contour box at the fixed threshold,
        best over the GT boxes) and that ``box`` (x0, y0, x1, y1, inclusive, at evaluation size)."""
        loc = {}
        if self.localization is not None and self.localization.keep_per_image:
            loc = {r["image_id"]: r for r in self.localization.per_image}
        for i, image_id in enumerate(self.ids):
            rec: dict[str, Any] = {"image_id": image_id, "label": self.labels[i],
                                   "top1_correct": self.top1[i], "top5_correct": self.top5[i]}
            r = loc.get(image_id)
            if r is not None:
                rec["iou"] = r["iou"]
                rec["box"] = r["box"]
            yield rec


def merge_states(states: Sequence[EvalState]) -> EvalState:
    """The exact combination of the shards' states (the first one is updated and returned)."""
    if not states:
        raise ValueError("merge_states: no states to merge")
    merged = states[0]
    for other in states[1:]:
        merged.merge(other)
    return merged
