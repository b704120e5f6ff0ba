"""COCO export: ``instances.json`` (images, categories, annotations with scores) and
``detections.json`` (the same boxes as a results list, for ``COCO.loadRes``).

Conventions: ``bbox`` is ``[x, y, width, height]`` in original pixels (continuous edges, so
``x = x0``, ``width = x1 - x0``), ``area = width * height``, ``iscrowd = 0``, ``score`` the class
probability. Category ids are camloc class ids plus one (COCO reserves nothing, but detection
libraries commonly take 0 for the background); each category also carries ``camloc_class_id``.
Image ids count from 1 in the order of ``results.jsonl``; ``file_name`` is the dataset's image
id for ``--dataset`` runs (relative to its image folder), else the image's absolute path; every
image also carries ``camloc_path`` (its absolute path). A name that is not valid UTF-8 is written
with U+FFFD for each byte that is not (JSON text is UTF-8).

Both files are written atomically and streamed: the records are read twice (once for the images,
once for the annotations), never held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from camloc.export.records import detections
from camloc.io import atomic_open, clean_text, make_out_dir

__all__ = ["write_coco", "category_id", "class_of_category"]


def category_id(class_id: int) -> int:
    """The COCO category id of a camloc class id."""
    return int(class_id) + 1


def class_of_category(category: dict[str, Any]) -> int:
    """The camloc class id of a COCO category: its ``camloc_class_id`` when present, else its
    ``id`` (a COCO file camloc did not write)."""
    cid = category.get("camloc_class_id", category.get("id"))
    return int(cid)


def _dump(obj: Any) -> bytes:
    # clean_text: a file or class name that is not UTF-8 (lone surrogates) gets U+FFFD
    return clean_text(json.dumps(obj, ensure_ascii=False, allow_nan=False,
                                 separators=(",", ":"))).encode("utf-8")


def write_coco(records: Callable[[], Iterable[dict[str, Any]]], folder: Path,
               class_names: Sequence[str] | None = None,
               info: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``folder/instances.json`` and ``folder/detections.json`` from the records
    ``records()`` yields (called twice; each call must yield the same records in the same order).

    ``class_names`` (index == class id) gives every category; without it the categories are
    the classes the records name. Returns the two paths.
    """
    make_out_dir(folder.parent, folder.name)
    if class_names is None:
        seen: dict[int, str] = {}
        for rec in records():
            for cid, name in zip(rec.get("class_ids") or [], rec.get("class_names") or []):
                seen.setdefault(int(cid), str(name))
        cats = [(c, seen[c]) for c in sorted(seen)]
    else:
        cats = list(enumerate(class_names))
    instances, results = folder / "instances.json", folder / "detections.json"
    with atomic_open(instances, "wb") as fh, atomic_open(results, "wb") as rh:
        fh.write(b'{"info":' + _dump(info or {"description": "camloc explain boxes"})
                 + b',"licenses":[],"categories":[')
        fh.write(b",\n".join(_dump({"id": category_id(c), "name": n, "supercategory": "",
                                    "camloc_class_id": c}) for c, n in cats))
        fh.write(b'],\n"images":[\n')
        first = True
        for i, rec in enumerate(records(), 1):
            image = {"id": i, "file_name": rec.get("image_id") or rec["path"],
                     "width": int(rec["width"]), "height": int(rec["height"]),
                     "camloc_path": rec["path"]}
            fh.write((b"" if first else b",\n") + _dump(image))
            first = False
        fh.write(b'],\n"annotations":[\n')
        rh.write(b"[\n")
        ann = 0
        for i, rec in enumerate(records(), 1):
            for d in detections(rec):
                ann += 1
                w, h = d.width, d.height
                bbox = [round(d.box[0], 2), round(d.box[1], 2), round(w, 2), round(h, 2)]
                row = {"image_id": i, "category_id": category_id(d.class_id), "bbox": bbox,
                       "score": d.score}
                sep = b"" if ann == 1 else b",\n"
                rh.write(sep + _dump(row))
                fh.write(sep + _dump({"id": ann, **row, "area": round(bbox[2] * bbox[3], 4),
                                      "iscrowd": 0}))
        fh.write(b"\n]}\n")
        rh.write(b"\n]\n")
    return instances, results
