"""Scoring a box file against a dataset's ground-truth boxes (``camloc score --boxes``).

The box file is a COCO instances file (``coco/instances.json`` from ``camloc explain --format
coco``, or any COCO ``{"images", "annotations", "categories"}`` file with ``bbox`` boxes) or a
camloc ``results.jsonl``. No model and no maps: the boxes are scored as they are.

**Matching images.** A box-file image is the dataset sample whose resolved absolute path equals
the image's path (``results.jsonl``'s ``path``; COCO's ``camloc_path``, or its ``file_name``
when absolute); failing that, whose image id equals its dataset id (``results.jsonl``'s
``image_id``; COCO's ``file_name`` when relative, the layout ``--dataset`` runs write). Box-file
images that match no sample are counted (``unmatched``) and ignored; samples that no box-file
image matches count as misses (``missing``).

**Classes.** A sample is scored with the boxes of its ground-truth class only (GT-known
localization). COCO categories map to camloc class ids through their ``camloc_class_id``
(written by camloc), else their ``id``.

**Which box.** ``top``: the highest-scoring box of the class (the first one on ties; in camloc's
``--multi`` files every component of a class has the class's score and the largest comes first,
so ``top`` is the largest component: the box of a plain run). ``any``: the best of all the class's
boxes (MaxBoxAccV2-style, for multi-box files). A sample without a box of its class scores IoU 0
(``no_box``).

**IoU** is taken in original pixels against the best-matching ground-truth box, with continuous
edges on both sides (``area = (x1 - x0) * (y1 - y0)``; boxes exactly as the file and the metadata
give them). ``camloc evaluate`` instead follows wsolevaluation at 224 x 224 with inclusive +1-pixel
corners; at the original resolution the two differ by at most a pixel per edge.

Figures: the percentage of scored samples with IoU >= 0.3, 0.5 and 0.7, for ``top`` and ``any``,
the mean IoU, and one record per sample.

>>> import tempfile, pathlib, json
>>> from camloc.data.sample import Dataset, Sample
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> ds = Dataset("t", d, "csv", None, [Sample("a.jpg", d / "a.jpg", 1, [[0, 0, 10, 10]], (20, 20))],
...              ["x", "y"])
>>> rec = {"path": str(d / "a.jpg"), "width": 20, "height": 20, "class_ids": [1],
...        "class_names": ["y"], "probs": [0.9], "boxes": [[0, 0, 10, 5]]}
>>> _ = (d / "results.jsonl").write_text(json.dumps(rec) + "\\n")
>>> r = score_boxes(d / "results.jsonl", ds)
>>> r["top"]["0.5"], r["per_image"][0]["iou_top"]
(100.0, 0.5)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camloc.errors import ConfigError

__all__ = ["BoxEntry", "read_box_file", "score_boxes", "box_file_format", "write_box_report",
           "IOU_THRESHOLDS"]

IOU_THRESHOLDS = (0.3, 0.5, 0.7)


@dataclass
class BoxEntry:
    """One image of a box file: how it can be matched, and its boxes by class."""

    path: str | None
    image_id: str | None
    boxes: dict[int, list[tuple[float, tuple[float, float, float, float]]]] = field(
        default_factory=dict)

    def add(self, class_id: int, score: float, box: Sequence[float]) -> None:
        x0, y0, x1, y1 = (float(v) for v in box)
        self.boxes.setdefault(int(class_id), []).append((float(score), (x0, y0, x1, y1)))


def box_file_format(path: str | os.PathLike[str]) -> str:
    """``"coco"`` or ``"jsonl"`` (camloc results), from the file's first characters.

    Raises:
        ConfigError: neither (a COCO results list included: it names no image files).
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise ConfigError(f"--boxes {p}: cannot read it ({exc.strerror or exc})") from exc
    text = head.lstrip()
    if not text:
        return "jsonl"  # an empty results.jsonl: a run in which no image was explained
    if text.startswith(b"["):
        raise ConfigError(f"--boxes {p}: a COCO results list (image ids without file names) "
                          "cannot be matched to a dataset; give the instances file (camloc "
                          "explain --format coco writes coco/instances.json)")
    first = text.split(b"\n", 1)[0]
    try:
        rec = json.loads(first)
        if isinstance(rec, dict) and "path" in rec:
            return "jsonl"
    except ValueError:
        pass
    if text.startswith(b"{"):
        return "coco"
    raise ConfigError(f"--boxes {p}: neither a COCO instances file nor a camloc results.jsonl")


class _Bad(Exception):
    """A field of a box file that is not what the format says (the message names the field)."""


_MAX_ID = 2**53  # ids beyond this are not exact in JSON numbers


def _whole(value: Any, field: str) -> int:
    """A whole number (``3`` or ``3.0``), finite and within ``+-2**53``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{field}: expected a whole number, got {_show(value)}")
    if isinstance(value, float) and (not np.isfinite(value) or not value.is_integer()):
        raise _Bad(f"{field}: expected a whole number, got {_show(value)}")
    if abs(value) > _MAX_ID:
        raise _Bad(f"{field}: {_show(value)} is out of range (at most 2**53)")
    return int(value)


def _class_id(value: Any, field: str) -> int:
    cid = _whole(value, field)
    if cid < 0:
        raise _Bad(f"{field}: a class id must be >= 0, got {cid}")
    return cid


def _number(value: Any, field: str) -> float:
    """A finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not np.isfinite(float(value)):
        raise _Bad(f"{field}: expected a finite number, got {_show(value)}")
    return float(value)


def _file_path(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        what = "a NUL character" if isinstance(value, str) and "\0" in value else _show(value)
        raise _Bad(f"{field}: expected a file path (a non-empty string without NUL), got {what}")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(f"{field}: expected a list, got {_show(value)}")
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{field}: expected an object, got {_show(value)}")
    return value


def _box4(value: Any, field: str) -> tuple[float, float, float, float]:
    vals = _list(value, field)
    if len(vals) != 4:
        raise _Bad(f"{field}: expected 4 numbers, got {len(vals)}")
    x0, y0, x1, y1 = (_number(v, f"{field}[{k}]") for k, v in enumerate(vals))
    return x0, y0, x1, y1


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_box_file(path: str | os.PathLike[str]) -> Iterator[BoxEntry]:
    """The images of a box file with their boxes (see the module docstring for the formats).

    Every field used is validated as strictly as a dataset's metadata: a field of the wrong
    type, a non-finite number or id, a path with NUL is a :class:`ConfigError` of one line
    naming the file, the record (``images[3]``, ``annotations[7]``, or ``:LINE`` of a
    ``results.jsonl``) and the field.
    """
    p = Path(path)
    if box_file_format(p) == "jsonl":
        yield from _read_jsonl(p)
        return
    yield from _read_coco(p)


def _read_jsonl(p: Path) -> Iterator[BoxEntry]:
    from camloc.export.records import iter_records

    n = 0
    records = iter_records(p)
    while True:
        try:
            rec = next(records)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--boxes {p}: not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start})") from None
        except RecursionError:
            raise ConfigError(f"--boxes {p}: a record nested too deeply") from None
        n += 1
        try:
            yield _jsonl_entry(rec)
        except _Bad as exc:
            raise ConfigError(f"--boxes {p}: record {n} ({_show(rec.get('path'))}): {exc}") \
                from None


def _jsonl_entry(rec: dict[str, Any]) -> BoxEntry:
    path = _file_path(rec["path"], "path")
    image_id = rec.get("image_id")
    if image_id is not None:
        image_id = _file_path(image_id, "image_id")
    ids = [_class_id(v, f"class_ids[{j}]")
           for j, v in enumerate(_list(rec.get("class_ids") or [], "class_ids"))]
    probs_raw = rec.get("probs")
    probs = [0.0] * len(ids) if probs_raw is None else [
        _number(v, f"probs[{j}]") for j, v in enumerate(_list(probs_raw, "probs"))]
    if len(probs) != len(ids):
        raise _Bad(f"probs: {len(probs)} values for {len(ids)} class_ids")
    comps = rec.get("component_boxes")
    per_class: list[list[Any]]
    if comps is not None:
        per_class = [_list(c, f"component_boxes[{j}]")
                     for j, c in enumerate(_list(comps, "component_boxes"))]
        where = "component_boxes[{j}][{k}]"
    else:
        per_class = [[b] for b in _list(rec.get("boxes") or [], "boxes")]
        where = "boxes[{j}]"
    e = BoxEntry(path, image_id)
    for j, cid in enumerate(ids):
        for k, b in enumerate(per_class[j] if j < len(per_class) else []):
            if b is None or b == []:  # nothing above the threshold: no box
                continue
            x0, y0, x1, y1 = _box4(b, where.format(j=j, k=k))
            if x1 > x0 and y1 > y0:
                e.add(cid, probs[j], (x0, y0, x1, y1))
    return e


def _read_coco(p: Path) -> Iterator[BoxEntry]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc) or type(exc).__name__
        raise ConfigError(f"--boxes {p}: not a readable COCO instances file ({reason})") from None
    field = ""
    try:
        data = _object(data, "the file")
        if "images" not in data:
            raise _Bad("no 'images' list")
        images = _list(data["images"], "images")
        anns = _list(data.get("annotations", []), "annotations")
        cats: dict[int, int] = {}
        for n, c in enumerate(_list(data.get("categories", []), "categories")):
            field = ""
            c = _object(c, f"categories[{n}]")
            field = f"categories[{n}]."
            cid = _whole(c.get("id"), "id")
            cats[cid] = _class_id(c["camloc_class_id"], "camloc_class_id") \
                if c.get("camloc_class_id") is not None else _class_id(cid, "id")
        entries: dict[int, BoxEntry] = {}
        for n, im in enumerate(images):
            field = ""
            im = _object(im, f"images[{n}]")
            field = f"images[{n}]."
            name = _file_path(im.get("file_name"), "file_name")
            abs_path = im.get("camloc_path")
            abs_path = _file_path(abs_path, "camloc_path") if abs_path is not None \
                else (name if os.path.isabs(name) else None)
            image_id = _whole(im.get("id"), "id")
            if image_id in entries:
                raise _Bad(f"id: {image_id} is used by an earlier image too")
            entries[image_id] = BoxEntry(abs_path, None if os.path.isabs(name) else name)
        for n, a in enumerate(anns):
            field = ""
            a = _object(a, f"annotations[{n}]")
            field = f"annotations[{n}]."
            x, y, w, h = _box4(a.get("bbox"), "bbox")
            if w < 0 or h < 0:
                raise _Bad(f"bbox: width and height must be >= 0, got {w:g}, {h:g}")
            image_id = _whole(a.get("image_id"), "image_id")
            if image_id not in entries:
                raise _Bad(f"image_id: {image_id} is not the id of any image of the file")
            cat = _whole(a.get("category_id"), "category_id")
            cid = cats[cat] if cat in cats else _class_id(cat, "category_id")
            score = _number(a["score"], "score") if "score" in a else 1.0
            entries[image_id].add(cid, score, (x, y, x + w, y + h))
    except _Bad as exc:
        raise ConfigError(f"--boxes {p}: {field}{exc}") from None
    yield from entries.values()


def _iou(box: tuple[float, ...], gts: np.ndarray) -> float:
    """Best IoU of ``box`` over the ``(G, 4)`` boxes ``gts`` (continuous edges)."""
    if gts.size == 0:
        return 0.0
    x0 = np.maximum(box[0], gts[:, 0])
    y0 = np.maximum(box[1], gts[:, 1])
    x1 = np.minimum(box[2], gts[:, 2])
    y1 = np.minimum(box[3], gts[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    gt_area = np.clip(gts[:, 2] - gts[:, 0], 0, None) * np.clip(gts[:, 3] - gts[:, 1], 0, None)
    union = area + gt_area - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return float(iou.max())


def score_boxes(path: str | os.PathLike[str], dataset: Any,
                iou_thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, Any]:
    """Score the box file at ``path`` against ``dataset`` (a :class:`camloc.data.sample.Dataset`
    with labels and boxes); returns the report (see the module docstring).

    Raises:
        ConfigError: an unreadable box file, or a dataset without labelled, boxed images.
    """
    p = Path(path)
    fmt = box_file_format(p)
    by_path: dict[str, int] = {}
    by_id: dict[str, int] = {}
    for i, s in enumerate(dataset.samples):
        by_id.setdefault(s.image_id, i)
        by_path.setdefault(str(Path(s.path).expanduser().resolve()), i)
    found: dict[int, BoxEntry] = {}
    unmatched = duplicates = 0
    for e in read_box_file(p):
        i = None
        if e.path is not None:
            i = by_path.get(str(Path(e.path).expanduser().resolve()))
        if i is None and e.image_id is not None:
            i = by_id.get(e.image_id)
        if i is None:
            unmatched += 1
            continue
        duplicates += i in found
        found[i] = e
    per_image = []
    skipped = {"no_label": 0, "no_gt_box": 0}
    ious_top, ious_any = [], []
    missing = no_box = 0
    for i, s in enumerate(dataset.samples):
        if s.label is None:
            skipped["no_label"] += 1
            continue
        if not s.has_boxes:
            skipped["no_gt_box"] += 1
            continue
        e = found.get(i)
        boxes = e.boxes.get(int(s.label), []) if e is not None else []
        missing += e is None
        no_box += e is not None and not boxes
        top = any_ = 0.0
        if boxes:
            best = max(range(len(boxes)), key=lambda j: (boxes[j][0], -j))
            top = _iou(boxes[best][1], s.boxes)
            any_ = max(_iou(b, s.boxes) for _, b in boxes)
        ious_top.append(top)
        ious_any.append(any_)
        per_image.append({"image_id": s.image_id, "label": int(s.label),
                          "matched": e is not None, "boxes": len(boxes),
                          "iou_top": round(top, 6), "iou_any": round(any_, 6)})
    n = len(per_image)
    if n == 0:
        raise ConfigError(f"dataset {getattr(dataset, 'name', '')!r} has no image with both a "
                          "class label and a ground-truth box to score against")
    top_a, any_a = np.asarray(ious_top), np.asarray(ious_any)

    def rates(a: np.ndarray) -> dict[str, float]:
        return {f"{t:g}": round(float((a >= t).mean() * 100.0), 4) for t in iou_thresholds}

    return {
        "file": str(p.resolve()), "format": fmt,
        "dataset": {"name": getattr(dataset, "name", ""), "root": str(getattr(dataset, "root", "")),
                    "split": getattr(dataset, "split", None), "images": len(dataset.samples)},
        "protocol": {"boxes": "ground-truth class only (GT-known)",
                     "iou": "original pixels, continuous edges, best ground-truth box",
                     "top": "highest-scoring box of the class", "any": "best box of the class"},
        "counts": {"scored": n, "matched": n - missing, "missing": missing,
                   "no_box_for_label": no_box, "unmatched_in_file": unmatched,
                   "duplicates_in_file": duplicates, **skipped},
        "top": rates(top_a), "any": rates(any_a),
        "mean_iou": {"top": round(float(top_a.mean()), 6), "any": round(float(any_a.mean()), 6)},
        "per_image": per_image,
    }


def write_box_report(path: str | os.PathLike[str], dataset: Any, out: str | os.PathLike[str]
                     ) -> tuple[dict[str, Any], Path]:
    """:func:`score_boxes`, written atomically to ``out/report.json`` (with camloc's versions;
    ``protocol.name`` is ``"boxes"``). Everything is checked before ``out`` is created.

    Raises:
        ConfigError: no such box file, or what :func:`score_boxes` raises.
    """
    from camloc.io import atomic_write_json, out_lock, versions

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--boxes {p}: no such file")
    report = score_boxes(p, dataset)
    report["protocol"] = {"name": "boxes", **report["protocol"]}
    report["versions"] = versions()
    out = Path(out)
    json_path = out / "report.json"
    with out_lock(out):  # creates out; a second run writing into it meanwhile is refused
        atomic_write_json(json_path, report)
    return report, json_path
