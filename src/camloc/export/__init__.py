"""Box files from explain runs: COCO, YOLO and PASCAL VOC, made from ``results.jsonl``.

``camloc explain --format coco,yolo,voc`` writes, besides ``results.jsonl`` (always: it is the
run's record and what a resumed run reads):

========  =====================================================================================
jsonl     ``results.jsonl`` only (the default)
coco      ``coco/instances.json`` (images, categories, annotations with ``score``) and
          ``coco/detections.json`` (the same boxes as a ``COCO.loadRes`` results list)
yolo      ``yolo/labels/<name>.txt`` (``class cx cy w h``, normalised), ``yolo/classes.txt``,
          ``yolo/index.jsonl``
voc       ``voc/<name>.xml`` (PASCAL VOC annotations), ``voc/index.jsonl``
========  =====================================================================================

Every export is rebuilt from ``results.jsonl`` at the end of each run (so a resumed run, or one
that only adds a format, exports every image of the run folder, and nothing stale remains);
each file is written atomically, the YOLO and VOC folders are replaced as a whole. Boxes: one
per explained class (its largest component), or with ``--multi`` every component's box; classes
whose box is empty (nothing above the threshold) give none. See :mod:`camloc.export.coco`,
:mod:`camloc.export.yolo` and :mod:`camloc.export.voc` for each format's conventions.

>>> parse_formats("coco, yolo")
['coco', 'yolo']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from camloc.errors import ConfigError
from camloc.export.names import output_name
from camloc.export.records import Detection, detections, iter_records

__all__ = ["FORMATS", "Detection", "check_export_targets", "detections", "export_results",
           "iter_records", "output_name", "parse_formats", "to_onnx"]

FORMATS = ("jsonl", "coco", "yolo", "voc")


def __getattr__(name: str) -> Any:  # ``camloc.export.to_onnx``, imported lazily (onnx, torch)
    if name == "to_onnx":
        from camloc.export.onnx import to_onnx

        return to_onnx
    raise AttributeError(f"module 'camloc.export' has no attribute {name!r}")


def parse_formats(value: str | Sequence[str] | None) -> list[str]:
    """``"coco,yolo"`` (or a list) -> the formats in order, each once; ``jsonl`` is implied.

    Raises:
        ConfigError: an unknown format.
    """
    items = value.split(",") if isinstance(value, str) else list(value or [])
    out: list[str] = []
    for item in items:
        f = str(item).strip().lower()
        if not f:
            continue
        if f not in FORMATS:
            raise ConfigError(f"--format {item!r}: expected one or more of {', '.join(FORMATS)}, "
                              "separated by commas")
        if f not in out and f != "jsonl":
            out.append(f)
    return out


def check_export_targets(out: str | os.PathLike[str], formats: Sequence[str]) -> None:
    """Refuse (:class:`~camloc.errors.ConfigError`) before a run starts when an export of
    ``formats`` could not be written into ``out``: ``coco/`` a link or a file, ``yolo/`` or
    ``voc/`` a link, a file, or a folder camloc did not make (a user's own labels: camloc
    replaces only its own export folders, never deletes a user's files)."""
    from camloc.export._files import check_replaceable
    from camloc.io import refuse_symlink

    out = Path(out)
    for fmt in parse_formats(list(formats)):
        if fmt == "coco":
            refuse_symlink(out / "coco")
            if (out / "coco").exists() and not (out / "coco").is_dir():
                raise ConfigError(f"{out / 'coco'} exists and is not a folder; remove it or "
                                  f"choose another --out")
        else:
            check_replaceable(out / fmt)


def export_results(results: str | os.PathLike[str], out: str | os.PathLike[str],
                   formats: Sequence[str], class_names: Sequence[str] | None = None,
                   info: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write each of ``formats`` (``coco``, ``yolo``, ``voc``) into ``out`` from the records of
    ``results`` (a ``results.jsonl``). ``class_names`` (the model's, index == class id) fixes
    the category list; ``info`` goes into the COCO file's ``info``. Returns where each went.

    >>> import tempfile, pathlib, json
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rec = {"path": "/x/a.jpg", "width": 100, "height": 50, "class_ids": [2],
    ...        "class_names": ["cat"], "probs": [0.9], "boxes": [[10, 5, 60, 45]]}
    >>> _ = (d / "results.jsonl").write_text(json.dumps(rec) + "\\n")
    >>> sorted(export_results(d / "results.jsonl", d, ["coco", "yolo"]))
    ['coco', 'yolo']
    >>> (d / "yolo" / "classes.txt").read_text().splitlines()
    ['', '', 'cat']
    """
    from camloc.export._files import remove_stale_stages

    results, out = Path(results), Path(out)
    done: dict[str, Path] = {}
    for fmt in parse_formats(list(formats)):
        if fmt == "coco":
            from camloc.export.coco import write_coco

            write_coco(lambda: iter_records(results), out / "coco", class_names, info)
            done[fmt] = out / "coco"
        elif fmt == "yolo":
            from camloc.export.yolo import write_yolo

            remove_stale_stages(out, "yolo")
            done[fmt] = write_yolo(iter_records(results), out / "yolo", class_names)
        elif fmt == "voc":
            from camloc.export.voc import write_voc

            remove_stale_stages(out, "voc")
            done[fmt] = write_voc(iter_records(results), out / "voc")
    return done
