"""PASCAL VOC export: ``voc/<name>.xml`` per image (``<name>`` from
:func:`camloc.export.names.output_name`) plus ``voc/index.jsonl``
(``{"image": absolute path, "annotation": "<name>.xml"}`` in the order of ``results.jsonl``).

Each file is a VOC ``<annotation>``: ``folder``, ``filename``, ``path``, ``size`` (width, height,
depth 3), ``segmented`` 0 and one ``<object>`` per box with the class name, ``pose``
Unspecified, ``truncated`` and ``difficult`` 0, camloc's ``score`` (the class probability; VOC
readers ignore elements they do not know) and ``bndbox`` in VOC's 1-based inclusive pixel
coordinates: ``xmin = round(x0) + 1``, ``xmax = round(x1)`` (likewise y) for camloc's continuous
box ``x0, y0, x1, y1``, at least one pixel wide.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from camloc.export._files import staged_folder
from camloc.export.names import output_name
from camloc.export.records import Detection, detections
from camloc.io import clean_text, dumps

__all__ = ["write_voc", "voc_xml", "voc_box"]


def voc_box(box: tuple[float, float, float, float], width: int, height: int
            ) -> tuple[int, int, int, int]:
    """VOC's ``xmin, ymin, xmax, ymax`` (1-based, inclusive) of a continuous-edge box.

    >>> voc_box((0.0, 10.4, 20.6, 30.0), 100, 100)
    (1, 11, 21, 30)
    """
    x0 = min(max(int(round(box[0])), 0), width - 1)
    y0 = min(max(int(round(box[1])), 0), height - 1)
    x1 = min(max(int(round(box[2])), x0 + 1), width)
    y1 = min(max(int(round(box[3])), y0 + 1), height)
    return x0 + 1, y0 + 1, x1, y1


def _sub(parent: ET.Element, tag: str, text: Any = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


_NOT_XML_RE = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(s: str) -> str:
    """``s`` with only characters XML 1.0 can hold: lone surrogates (bytes of a file name that
    is not UTF-8) become U+FFFD, the rest XML forbids (control characters, U+FFFE, U+FFFF) are
    dropped.

    >>> _xml_text("a\\x01b\\uffff") == "ab"
    True
    """
    return _NOT_XML_RE.sub("", clean_text(s))


def voc_xml(rec: dict[str, Any], dets: list[Detection]) -> bytes:
    """The VOC annotation of one record."""
    path = _xml_text(os.fsdecode(rec["path"]))
    w, h = int(rec["width"]), int(rec["height"])
    root = ET.Element("annotation")
    _sub(root, "folder", Path(path).parent.name)
    _sub(root, "filename", Path(path).name)
    _sub(root, "path", path)
    src = _sub(root, "source")
    _sub(src, "database", "camloc pseudo-labels")
    size = _sub(root, "size")
    _sub(size, "width", w)
    _sub(size, "height", h)
    _sub(size, "depth", 3)
    _sub(root, "segmented", 0)
    for d in dets:
        obj = _sub(root, "object")
        _sub(obj, "name", _xml_text(d.class_name) or str(d.class_id))
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", 0)
        _sub(obj, "difficult", 0)
        _sub(obj, "score", f"{d.score:.6f}")
        bb = _sub(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), voc_box(d.box, w, h)):
            _sub(bb, tag, v)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def write_voc(records: Iterable[dict[str, Any]], folder: Path) -> Path:
    """Write the VOC export of ``records`` into ``folder`` (replaced as a whole)."""
    with staged_folder(folder) as stage:
        with open(stage / "index.jsonl", "w", encoding="utf-8") as index:
            for rec in records:
                w, h = int(rec["width"]), int(rec["height"])
                dets = detections(rec) if w > 0 and h > 0 else []
                name = f"{output_name(rec['path'])}.xml"
                (stage / name).write_bytes(voc_xml(rec, dets))
                index.write(dumps({"image": rec["path"], "annotation": name}) + "\n")
    return folder
