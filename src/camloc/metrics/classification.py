"""Streaming top-1 / top-5 classification accuracy (percent).

``update`` takes either logits ``(N, C)`` (floats) or top-k class ids ``(N, k)`` (integers, best
first) and labels ``(N,)``. From logits the ranking is ``np.argsort(-logits, kind="stable")``: ties go
to the lower class index, so top-1 is ``np.argmax``. A sample is top-k correct when its label is among
the first k ranked ids. ``update`` returns the per-sample ``(top1_correct, top5_correct)`` so they can
be passed straight to :meth:`camloc.metrics.LocalizationAccumulator.update`.

>>> import numpy as np
>>> acc = ClassificationAccumulator()
>>> t1, t5 = acc.update(np.array([[0.1, 0.9, 0, 0, 0, 0], [0.8, 0.1, 0, 0, 0, 0]]), [1, 1])
>>> acc.compute()
{'top1': 50.0, 'top5': 100.0, 'count': 2}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from camloc.errors import MetricError

__all__ = ["ClassificationAccumulator"]


class ClassificationAccumulator:
    """Counts of top-1 and top-5 correct predictions."""

    def __init__(self) -> None:
        self.count = 0
        self.top1 = 0
        self.top5 = 0
        self.n_top5 = 0

    def update(self, logits_or_topk: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Add a batch; returns per-sample ``(top1_correct, top5_correct)`` bool arrays
        (``top5_correct`` is None when fewer than 5 ids per sample are available)."""
        x = np.asarray(logits_or_topk)
        y = np.asarray(labels)
        if x.ndim != 2 or x.shape[1] < 1:
            raise MetricError(f"logits_or_topk must have shape (N, C) or (N, k), got {x.shape}")
        if y.shape != (x.shape[0],):
            raise MetricError(f"labels must have shape ({x.shape[0]},), got {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise MetricError(f"labels must be integers, got dtype {y.dtype}")
        if np.issubdtype(x.dtype, np.floating):
            if np.isnan(x).any():
                raise MetricError("logits contain NaN")
            if (y < 0).any() or (y >= x.shape[1]).any():
                raise MetricError(f"labels must lie in [0, {x.shape[1]}) for {x.shape[1]} classes")
            k = min(5, x.shape[1])
            ranked = np.argsort(-x, axis=1, kind="stable")[:, :k]
        elif np.issubdtype(x.dtype, np.integer):
            ranked = x[:, :5]
        else:
            raise MetricError(f"logits_or_topk must be float logits or integer ids, got {x.dtype}")
        hit = ranked == y[:, None]
        t1 = hit[:, 0]
        t5 = hit.any(axis=1) if ranked.shape[1] >= 5 or np.issubdtype(x.dtype, np.floating) else None
        self.count += x.shape[0]
        self.top1 += int(t1.sum())
        if t5 is not None:
            self.top5 += int(t5.sum())
            self.n_top5 += x.shape[0]
        return t1, t5

    def merge(self, other: ClassificationAccumulator) -> ClassificationAccumulator:
        """Add another accumulator's counts; returns ``self``."""
        if not isinstance(other, ClassificationAccumulator):
            raise MetricError(f"can only merge a ClassificationAccumulator, got {type(other).__name__}")
        self.count += other.count
        self.top1 += other.top1
        self.top5 += other.top5
        self.n_top5 += other.n_top5
        return self

    def state_dict(self) -> dict[str, Any]:
        """Counts as Python ints."""
        return {"count": self.count, "top1": self.top1, "top5": self.top5, "n_top5": self.n_top5}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> ClassificationAccumulator:
        """Rebuild an accumulator saved with :meth:`state_dict`."""
        acc = cls()
        try:
            acc.count, acc.top1, acc.top5, acc.n_top5 = (int(d[k]) for k in ("count", "top1", "top5",
                                                                              "n_top5"))
        except KeyError as e:
            raise MetricError(f"state_dict is missing {e.args[0]!r}") from None
        return acc

    def compute(self) -> dict[str, Any]:
        """``{top1, top5, count}`` in percent (``top5`` None when top-5 ids were never available)."""
        if self.count == 0:
            raise MetricError("no samples were scored; call update() first")
        return {"top1": self.top1 * 100.0 / self.count,
                "top5": self.top5 * 100.0 / self.count if self.n_top5 == self.count else None,
                "count": self.count}
