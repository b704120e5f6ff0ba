"""``ilsvrc-xml``: ILSVRC images plus one PASCAL-VOC XML box file per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from camloc.data._parse import Problems, box_problem, dataset_name, parse_float, parse_int
from camloc.data.formats._ilsvrc import find_dir, find_image_dir, stem_index
from camloc.data.formats._synsets import ilsvrc_classes
from camloc.data.sample import Dataset, Sample
from camloc.errors import ConfigError


#: The largest annotation file read (an ILSVRC/PASCAL-VOC box file is about 1 KB).
MAX_XML_BYTES = 1 << 20


class _XmlNode:
    __slots__ = ("tag", "line", "children", "parts", "text")

    def __init__(self, tag: str, line: int) -> None:
        self.tag, self.line = tag, line
        self.children: list[_XmlNode] = []
        self.parts: list[str] = []  # character data, joined once at the end tag (linear time)
        self.text = ""

    def find(self, tag: str) -> _XmlNode | None:
        for c in self.children:
            if c.tag == tag:
                return c
        return None

    def findall(self, tag: str) -> list[_XmlNode]:
        return [c for c in self.children if c.tag == tag]


class _Refused(Exception):
    """A construct the hardened parser does not read (a DTD, an entity declaration)."""


def _parse_xml(file: Path, problems: Problems) -> _XmlNode | None:
    """A minimal XML tree that keeps each element's line number.

    Hardened: a document type declaration (DTD) or an entity declaration is refused before
    anything is expanded (no "billion laughs", no external entities), files over
    :data:`MAX_XML_BYTES` are refused unread, and text is collected in linear time.
    """
    from xml.parsers import expat

    try:
        with open(file, "rb") as fh:
            data = fh.read(MAX_XML_BYTES + 1)
    except OSError as exc:
        problems.add(file, 0, f"cannot read file: {exc.strerror or exc}")
        return None
    if len(data) > MAX_XML_BYTES:
        problems.add(file, 0, f"larger than {MAX_XML_BYTES} bytes; not an ILSVRC box file")
        return None
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_XmlNode] = []
    root: list[_XmlNode] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        node = _XmlNode(tag, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(tag: str) -> None:
        node = stack.pop()
        node.text = "".join(node.parts).strip()
        node.parts = []

    def chars(data: str) -> None:
        if stack:
            stack[-1].parts.append(data)

    def doctype(*_: Any) -> None:
        raise _Refused("a document type declaration (<!DOCTYPE>): DTDs and entities are not "
                       "read")

    def entity(*_: Any) -> None:
        raise _Refused("an entity declaration (<!ENTITY>): entities are not expanded")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    try:
        parser.Parse(data, True)
    except _Refused as exc:
        problems.add(file, parser.CurrentLineNumber, f"refused: {exc}")
        return None
    except expat.ExpatError as exc:
        problems.add(file, exc.lineno, f"malformed XML: {expat.ErrorString(exc.code)}")
        return None
    return root[0] if root else None


def _find_xml_dir(p: Path, split: str, annotations: Any, problems: Problems) -> Path | None:
    cands = [p, p / "ILSVRC" / "Annotations" / "CLS-LOC" / split,
             p / "Annotations" / "CLS-LOC" / split, p / "Annotations"]
    return find_dir(p, annotations, cands, lambda d: any(d.glob("*.xml")), "XML annotation",
                     "annotations", problems)


def read_ilsvrc_xml(p: Path, split: str | None, *, annotations: Any = None, images: Any = None,
                    synsets: Any = None, classes: Any = None, num_classes: int | None = None,
                    check_images: bool = True, name: str | None = None) -> Dataset:
    """ILSVRC images + one PASCAL-VOC XML per image.

    Class id = the synset's index in **sorted** synset order, the synsets taken from ``synsets=``
    (a list, or a ``LOC_synset_mapping.txt``-style file), else from ``LOC_synset_mapping.txt`` in
    the dataset folder or its parent, else from the sorted set of synsets found in the XML files
    (then ids depend on which classes are present; pass ``synsets=`` for the standard 1000,
    ``class_source`` is ``"synsets-seen"``). Class names are the mapping's descriptions (the
    synset itself when there is none). ``num_classes=`` is checked against the synset count.
    """
    if p.is_file():
        raise ConfigError(f"format 'ilsvrc-xml' needs a folder, got the file {p}")
    sp = split or "val"
    problems = Problems()
    xml_dir = _find_xml_dir(p, sp, annotations, problems)
    img_dir = find_image_dir(p, sp, images, problems)
    problems.raise_if_any(f"ILSVRC XML dataset {p}")
    assert xml_dir is not None and img_dir is not None
    by_stem = stem_index(img_dir, problems)
    records = []
    seen_syn: list[str] = []
    used: set[Path] = set()
    for xml in sorted(xml_dir.glob("*.xml")):
        tree = _parse_xml(xml, problems)
        if tree is None:
            continue
        fname_node = tree.find("filename")
        fname = fname_node.text if fname_node is not None and fname_node.text else xml.stem
        img = by_stem.get(fname) or by_stem.get(Path(fname).stem) or by_stem.get(xml.stem)
        if img is None:
            problems.add(xml, fname_node.line if fname_node else 1,
                         f"image {fname!r} not found in {img_dir}")
            continue
        used.add(img)
        size = None
        size_at = None
        size_node = tree.find("size")
        if size_node is not None:
            wn, hn = size_node.find("width"), size_node.find("height")
            w = parse_int(wn.text) if wn is not None else None
            h = parse_int(hn.text) if hn is not None else None
            if w is None or h is None or w < 1 or h < 1:
                problems.add(xml, size_node.line, "<size> needs positive integer <width> and <height>")
            else:
                size = (w, h)
                size_at = (str(xml), size_node.line)
        syns, boxes = [], []
        box_at: list[tuple[str, int]] = []
        objects = tree.findall("object")
        if not objects:
            problems.add(xml, tree.line, "no <object> in the annotation")
        for obj in objects:
            name_node, bb = obj.find("name"), obj.find("bndbox")
            if name_node is None or not name_node.text:
                problems.add(xml, obj.line, "<object> without <name>")
                continue
            if bb is None:
                problems.add(xml, obj.line, "<object> without <bndbox>")
                continue
            vals = []
            for tag in ("xmin", "ymin", "xmax", "ymax"):
                node = bb.find(tag)
                vals.append(parse_float(node.text) if node is not None else None)
            if any(v is None for v in vals):
                problems.add(xml, bb.line, "<bndbox> needs numeric xmin, ymin, xmax, ymax")
                continue
            box = tuple(float(v) for v in vals)  # type: ignore[arg-type]
            why = box_problem(box, size)
            if why:
                problems.add(xml, bb.line, why)
                continue
            syns.append((name_node.text, name_node.line))
            boxes.append(box)
            box_at.append((str(xml), bb.line))
        if len({s for s, _ in syns}) > 1:
            problems.add(xml, syns[1][1] if len(syns) > 1 else tree.line,
                         f"objects of several classes ({', '.join(sorted({s for s, _ in syns}))}); "
                         "an ILSVRC image has one label")
        seen_syn.extend(s for s, _ in syns)
        records.append((xml, img, syns[0] if syns else None, boxes, size, size_at, box_at))
    for f in sorted(set(by_stem.values()) - used):
        problems.add(f, 0, f"image has no XML annotation in {xml_dir}")
    syn_list, names, class_source = ilsvrc_classes(synsets, [p, p.parent, xml_dir], seen_syn,
                                                   classes, num_classes, p, problems)
    index = {s: i for i, s in enumerate(syn_list)}
    samples = []
    for xml, img, syn, boxes, size, size_at, box_at in records:
        label = None
        if syn is not None:
            if syn[0] not in index:
                problems.add(xml, syn[1], f"unknown synset {syn[0]} (not in the synset list)")
                continue
            label = index[syn[0]]
        samples.append(Sample(image_id=img.relative_to(img_dir).as_posix(), path=img, label=label,
                              boxes=np.asarray(boxes, dtype=np.float64), size=size,
                              size_source=size_at, box_lines=tuple(box_at)))
    problems.raise_if_any(f"ILSVRC XML dataset {p}")
    return Dataset(name=name or dataset_name(p), root=img_dir, format="ilsvrc-xml", split=split,
                   samples=samples, class_names=names, synsets=syn_list,
                   class_source=class_source)
