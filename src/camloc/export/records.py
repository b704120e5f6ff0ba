"""Reading an explain run's ``results.jsonl`` one record at a time, and the boxes of a record.

A record (see :meth:`camloc.Explanation.to_record`) holds ``path`` (resolved absolute), the
original ``width`` and ``height``, per class ``class_ids``, ``class_names``, ``probs`` and
``boxes`` (``x0, y0, x1, y1``, continuous pixel edges in original pixels) and, from ``--multi``
runs, ``component_boxes`` (every connected component's box per class, largest first). Dataset
runs add ``image_id``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camloc.errors import ConfigError

__all__ = ["Detection", "iter_records", "detections"]


@dataclass(frozen=True)
class Detection:
    """One box of one class of one image, in original pixels (continuous edges)."""

    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a ``results.jsonl``, one at a time (a torn last line is ignored).

    Raises:
        ConfigError: a line that is not a JSON object with a ``path`` (naming file and line).
    """
    p = Path(path)
    try:
        fh = open(p, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                break
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"{p}:{n}: not a JSON line ({exc})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
                raise ConfigError(f"{p}:{n}: not a camloc explain record (no \"path\")")
            yield rec


def _box(b: Any) -> tuple[float, float, float, float] | None:
    try:
        x0, y0, x1, y1 = (float(v) for v in b)
    except (TypeError, ValueError):
        return None
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def detections(rec: dict[str, Any]) -> list[Detection]:
    """Every non-empty box of a record, class by class in the record's order: the
    ``component_boxes`` of a ``--multi`` record (several per class, largest first), else one
    ``boxes`` entry per class. Each box's score is its class's probability. Empty boxes (a map
    with nothing above the threshold) are left out."""
    ids = rec.get("class_ids") or []
    names = rec.get("class_names") or [""] * len(ids)
    probs = rec.get("probs") or [None] * len(ids)
    comps = rec.get("component_boxes")
    boxes = rec.get("boxes") or []
    out: list[Detection] = []
    for j, cid in enumerate(ids):
        per_class = comps[j] if isinstance(comps, list) and j < len(comps) else (
            [boxes[j]] if j < len(boxes) else [])
        score = probs[j] if j < len(probs) and probs[j] is not None else 0.0
        for b in per_class:
            box = _box(b)
            if box is not None:
                out.append(Detection(int(cid), str(names[j]) if j < len(names) else "",
                                     float(score), box))
    return out
