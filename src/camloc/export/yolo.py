"""YOLO export (the Darknet/Ultralytics text format).

``yolo/labels/<name>.txt`` per image (``<name>`` from :func:`camloc.export.names.output_name`):
one line per box, ``class cx cy w h``, the class id (camloc's, from 0) and the box centre and size
divided by the image's width and height (6 decimals, clipped to ``[0, 1]``); an image without a
box gets an empty file (a background image). ``yolo/classes.txt``: the class names, line i = class
id i. ``yolo/index.jsonl``: ``{"image": absolute path, "label": "labels/<name>.txt"}`` per image
in the order of ``results.jsonl`` (label files are named per image path, not after the image's
stem, so two ``x.jpg`` in different folders never share a label file; link or copy each image
beside its label under one stem for trainers that pair them by name). Scores are not part of the
format (training loaders refuse a sixth column): they are in ``results.jsonl`` and the COCO file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from camloc.export._files import staged_folder
from camloc.export.names import output_name
from camloc.export.records import Detection, detections
from camloc.io import clean_text, dumps

__all__ = ["write_yolo", "yolo_line", "read_yolo_line"]


def yolo_line(d: Detection, width: int, height: int) -> str:
    """``class cx cy w h`` of one box, normalised by the image size.

    >>> from camloc.export.records import Detection
    >>> yolo_line(Detection(3, "x", 0.9, (10, 20, 30, 60)), 100, 200)
    '3 0.200000 0.200000 0.200000 0.200000'
    """
    def clip(v: float) -> float:
        return min(1.0, max(0.0, v))

    x0, y0 = clip(d.box[0] / width), clip(d.box[1] / height)
    x1, y1 = clip(d.box[2] / width), clip(d.box[3] / height)
    return f"{d.class_id} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}"


def read_yolo_line(line: str, width: int, height: int) -> tuple[int, tuple[float, ...]]:
    """The class id and the ``x0, y0, x1, y1`` pixel box of one label line (the inverse of
    :func:`yolo_line`, up to its 6-decimal rounding)."""
    c, cx, cy, w, h = line.split()
    fx, fy, fw, fh = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
    return int(c), (fx - fw / 2, fy - fh / 2, fx + fw / 2, fy + fh / 2)


def write_yolo(records: Iterable[dict[str, Any]], folder: Path,
               class_names: Sequence[str] | None = None) -> Path:
    """Write the YOLO export of ``records`` into ``folder`` (replaced as a whole). Without
    ``class_names``, ``classes.txt`` names the classes the records hold (others blank)."""
    with staged_folder(folder) as stage:
        labels = stage / "labels"
        labels.mkdir()
        names: dict[int, str] = dict(enumerate(class_names)) if class_names is not None else {}
        with open(stage / "index.jsonl", "w", encoding="utf-8") as index:
            for rec in records:
                w, h = int(rec["width"]), int(rec["height"])
                dets = detections(rec) if w > 0 and h > 0 else []
                rel = f"labels/{output_name(rec['path'])}.txt"
                (stage / rel).write_text("".join(yolo_line(d, w, h) + "\n" for d in dets),
                                         encoding="utf-8")
                index.write(dumps({"image": rec["path"], "label": rel}) + "\n")
                if class_names is None:
                    for d in dets:
                        names.setdefault(d.class_id, d.class_name)
        count = (max(names) + 1) if names else 0
        text = "".join(" ".join(clean_text(names.get(i, "")).split()) + "\n"
                       for i in range(count))
        (stage / "classes.txt").write_text(text, encoding="utf-8")
    return folder
