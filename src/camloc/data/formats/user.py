"""``csv`` / ``json``: camloc's own simple annotation files for your data."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from camloc.data._parse import (Problems, box_problem, class_list_source, csv_rows, dataset_name,
                                finish_classes, load_class_list, parse_float, parse_int,
                                root_keyword, same_length)
from camloc.data.formats._synsets import load_synsets
from camloc.data.paths import id_problem
from camloc.data.sample import Dataset, Sample
from camloc.errors import ConfigError


_CSV_COLUMNS = ("path", "label", "x0", "y0", "x1", "y1", "width", "height", "mask", "ignore")


#: Largest width or height accepted in the metadata.
_MAX_SIDE = 2**31 - 1


class _Entry:
    __slots__ = ("path", "label", "label_line", "boxes", "box_lines", "size", "size_line", "masks",
                 "ignore", "line")

    def __init__(self, path: str, line: int) -> None:
        self.path, self.line = path, line
        self.label: str | int | None = None
        self.label_line = line
        self.boxes: list[tuple[float, float, float, float]] = []
        self.box_lines: list[int] = []
        self.size: tuple[int, int] | None = None
        self.size_line = line
        self.masks: list[str] = []
        self.ignore: str | None = None


def _paths_problem(path: str, *others: str | None) -> str | None:
    """Why an image path (or a mask path) of the file leaves the image folder, or ``None``."""
    for rel in (path, *others):
        if isinstance(rel, str) and (rel or rel is path):
            why = id_problem(rel)
            if why is not None:
                return f"{rel!r}: {why}"
    return None


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def _parse_user_csv(file: Path, problems: Problems) -> list[_Entry]:
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(file, 0, f"cannot read file: {exc}")
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        problems.add(file, 1, f"malformed CSV: {exc}")
        return []
    if header is None:
        problems.add(file, 1, "empty file: expected a header such as 'path,label,x0,y0,x1,y1'")
        return []
    cols = [h.strip().lower() for h in header]
    bad = [c for c in cols if c not in _CSV_COLUMNS]
    if "path" not in cols or bad or len(set(cols)) != len(cols):
        reason = "header needs a 'path' column" if "path" not in cols else (
            f"unknown column(s) {', '.join(repr(b) for b in bad)}" if bad else "repeated column")
        problems.add(file, 1, reason + f"; allowed: {', '.join(_CSV_COLUMNS)}")
        return []
    box_cols = [c in cols for c in ("x0", "y0", "x1", "y1")]
    if any(box_cols) and not all(box_cols):
        problems.add(file, 1, "give all four box columns x0,y0,x1,y1 or none")
        return []
    if ("width" in cols) != ("height" in cols):
        problems.add(file, 1, "give both width and height columns or neither")
        return []
    entries: dict[str, _Entry] = {}
    for number, row in csv_rows(reader, len(cols), file, problems):
        rec = {c: v.strip() for c, v in zip(cols, row)}
        path = rec["path"]
        if not path:
            problems.add(file, number, "empty path")
            continue
        why = _paths_problem(path, rec.get("mask"), rec.get("ignore"))
        if why is not None:
            problems.add(file, number, why)
            continue
        e = entries.get(path)
        if e is None:
            e = entries[path] = _Entry(path, number)
        label = rec.get("label", "")
        if label:
            if e.label is not None and e.label != label:
                problems.add(file, number, f"label {label!r} differs from {e.label!r} given for "
                                           f"{path!r} on line {e.label_line}")
            elif e.label is None:
                e.label, e.label_line = label, number
        if "width" in rec and (rec["width"] or rec["height"]):
            w, h = parse_int(rec["width"]), parse_int(rec["height"])
            if w is None or h is None or not (1 <= w <= _MAX_SIDE and 1 <= h <= _MAX_SIDE):
                problems.add(file, number, "width and height must be positive integers")
            elif e.size is not None and e.size != (w, h):
                problems.add(file, number, f"size {w}x{h} differs from {e.size[0]}x{e.size[1]} "
                                           f"given earlier for {path!r}")
            elif e.size is None:
                e.size, e.size_line = (w, h), number
        if "x0" in rec:
            raw = [rec[c] for c in ("x0", "y0", "x1", "y1")]
            if any(raw):
                vals = [parse_float(v) for v in raw]
                if any(v is None for v in vals):
                    problems.add(file, number, f"box coordinates must be finite numbers, got "
                                               f"{','.join(raw)}")
                else:
                    box = tuple(float(v) for v in vals)  # type: ignore[arg-type]
                    why = box_problem(box, e.size)
                    if why:
                        problems.add(file, number, why)
                    else:
                        e.boxes.append(box)  # type: ignore[arg-type]
                        e.box_lines.append(number)
        if rec.get("mask"):
            e.masks.append(rec["mask"])
        if rec.get("ignore"):
            if e.ignore is not None and e.ignore != rec["ignore"]:
                problems.add(file, number, f"a second, different ignore mask for {path!r}")
            e.ignore = rec["ignore"]
    return list(entries.values())


def _json_item_lines(text: str) -> list[int] | None:
    """Line numbers of the items of the top-level image array (``None`` if not determinable)."""
    dec = json.JSONDecoder()
    m = re.match(r"\s*\[", text)
    if m is None:
        m = re.search(r'"images"\s*:\s*\[', text)
    if m is None:
        return None
    pos, lines = m.end(), []
    ws = re.compile(r"[\s,]*")
    try:
        while True:
            pos = ws.match(text, pos).end()  # type: ignore[union-attr]
            if pos >= len(text) or text[pos] == "]":
                return lines
            lines.append(text.count("\n", 0, pos) + 1)
            _, pos = dec.raw_decode(text, pos)
    except (ValueError, RecursionError):
        return None


def _parse_user_json(file: Path, problems: Problems) -> tuple[list[_Entry], list[str] | None]:
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(file, 0, f"cannot read file: {exc}")
        return [], None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(file, exc.lineno, f"malformed JSON: {exc.msg}")
        return [], None
    except RecursionError:
        problems.add(file, 1, "malformed JSON: nested too deeply")
        return [], None
    classes = None
    if isinstance(data, dict):
        if not isinstance(data.get("images"), list):
            problems.add(file, 1, "a JSON object needs an 'images' list (and optionally 'classes')")
            return [], None
        if "classes" in data:
            if not isinstance(data["classes"], list) or not all(isinstance(c, str) for c in data["classes"]):
                problems.add(file, 1, "'classes' must be a list of strings")
            elif len(set(data["classes"])) != len(data["classes"]):
                problems.add(file, 1, "'classes' has duplicate names")
            else:
                classes = list(data["classes"])
        items = data["images"]
    elif isinstance(data, list):
        items = data
    else:
        problems.add(file, 1, "expected a list of images or {\"classes\": [...], \"images\": [...]}")
        return [], None
    lines = _json_item_lines(text)
    if lines is None or len(lines) != len(items):
        lines = [0] * len(items)
    entries: dict[str, _Entry] = {}
    allowed = {"path", "label", "boxes", "size", "masks", "ignore"}
    for k, (item, number) in enumerate(zip(items, lines)):
        where = f"images[{k}]: "
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"]:
            problems.add(file, number, where + "each image must be an object with a 'path' string")
            continue
        extra = set(item) - allowed
        if extra:
            problems.add(file, number, where + f"unknown key(s) {', '.join(sorted(extra))}; allowed: "
                                       f"{', '.join(sorted(allowed))}")
            continue
        path = item["path"]
        masks = item.get("masks")
        ign = item.get("ignore")
        why = _paths_problem(path, *(masks if isinstance(masks, list) else []),
                             ign if isinstance(ign, str) else None)
        if why is not None:
            problems.add(file, number, where + why)
            continue
        if path in entries:
            problems.add(file, number, where + f"duplicate path {path!r} (first at line "
                                       f"{entries[path].line})")
            continue
        e = entries[path] = _Entry(path, number)
        label = item.get("label")
        if label is not None:
            if isinstance(label, bool) or not isinstance(label, (int, str)):
                problems.add(file, number, where + "label must be an integer id, a class name or null")
            else:
                e.label = label
        size = item.get("size")
        if size is not None:
            if (not isinstance(size, list) or len(size) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= _MAX_SIDE
                               for v in size)):
                problems.add(file, number, where + "size must be [width, height], positive integers")
            else:
                e.size = (size[0], size[1])
        boxes = item.get("boxes")
        if boxes is not None and not isinstance(boxes, list):
            problems.add(file, number, where + "boxes must be a list of [x0, y0, x1, y1]")
            boxes = None
        for b in boxes or []:
            if (not isinstance(b, list) or len(b) != 4 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v)
                    for v in b)):
                problems.add(file, number, where + f"box {b!r} must be [x0, y0, x1, y1] numbers")
                continue
            box = tuple(float(v) for v in b)
            why = box_problem(box, e.size)
            if why:
                problems.add(file, number, where + why)
            else:
                e.boxes.append(box)  # type: ignore[arg-type]
                e.box_lines.append(number)
        masks = masks or []
        if not isinstance(masks, list) or not all(isinstance(m, str) for m in masks):
            problems.add(file, number, where + "masks must be a list of PNG paths")
        else:
            e.masks = list(masks)
        if ign is not None and not isinstance(ign, str):
            problems.add(file, number, where + "ignore must be a PNG path")
        elif ign:
            e.ignore = ign
    return list(entries.values()), classes


def read_user(p: Path, split: str | None, *, _kind: str, image_root: Any = None,
              classes: Any = None, num_classes: int | None = None, synsets: Any = None,
              check_images: bool = True, name: str | None = None) -> Dataset:
    """Class names: ``classes=``, the JSON's ``"classes"``, ``classes.txt`` beside the file and
    ``synsets=`` (line i = class i); the first present names the classes and any other present
    must have the same length."""
    if split is not None:
        raise ConfigError(f"the {_kind} format has no splits (write one file per split)")
    file = p if p.is_file() else p / f"annotations.{_kind}"
    problems = Problems()
    if not file.is_file():
        problems.add(file, 0, "missing file")
        problems.raise_if_any(f"{_kind} dataset {p}")
    base = file.parent
    root = root_keyword(image_root, "image_root", base) if image_root is not None else base
    if _kind == "csv":
        entries, inline_classes = _parse_user_csv(file, problems), None
    else:
        entries, inline_classes = _parse_user_json(file, problems)
    lists: list[tuple[list[str] | None, str]] = []
    if classes is not None:
        lists.append((load_class_list(classes, base, problems), class_list_source(classes, base)))
    if inline_classes is not None:
        lists.append((inline_classes, f"{file.name} 'classes'"))
    if (base / "classes.txt").is_file():
        lists.append((load_class_list(base / "classes.txt", base, problems),
                      str(base / "classes.txt")))
    syn_list = None
    if synsets is not None:
        got = load_synsets(synsets, base, problems)
        if got is not None:
            syn_list, descr, syn_from = got
            lists.append(([descr.get(s, s) for s in syn_list], syn_from))
    known_lists = [(n, src) for n, src in lists if n is not None]
    names, names_from = known_lists[0] if known_lists else (None, "classes=")
    for other, src in known_lists[1:]:
        same_length(names, names_from, other, src, problems)  # type: ignore[arg-type]
    # labels: ids, or names (looked up in the class list; without one, sorted unique names)
    def as_int(v: Any) -> int | None:
        if isinstance(v, int):
            return v
        return parse_int(v) if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v) else None

    raw = [e.label for e in entries if e.label is not None]
    by_name = names is None and any(as_int(v) is None for v in raw)
    if by_name:
        names = sorted({str(v) for v in raw})
    lookup = {n: i for i, n in enumerate(names)} if names is not None else {}
    if syn_list is not None and names is not None and len(syn_list) == len(names):
        for i, s in enumerate(syn_list):  # labels may name a class by its synset
            lookup.setdefault(s, i)
    samples, label_refs = [], []
    for e in entries:
        label: int | None = None
        if e.label is not None:
            if by_name:
                label = lookup[str(e.label)]
            else:
                label = as_int(e.label)
                if label is None:
                    if str(e.label) in lookup:
                        label = lookup[str(e.label)]
                    else:
                        problems.add(file, e.label_line, f"unknown class {e.label!r}")
                        continue
            label_refs.append((label, str(file), e.label_line))
        path = root / e.path
        if check_images and not path.is_file():
            problems.add(file, e.line, f"image not found: {path}")
        mask_paths = tuple(root / m for m in e.masks)
        ignore = root / e.ignore if e.ignore else None
        if check_images:
            for m in mask_paths + ((ignore,) if ignore is not None else ()):
                if not m.is_file():
                    problems.add(file, e.line, f"mask not found: {m}")
        samples.append(Sample(image_id=e.path, path=path, label=label,
                              boxes=np.asarray(e.boxes, dtype=np.float64), size=e.size,
                              box_lines=tuple((str(file), n) for n in e.box_lines),
                              mask_paths=mask_paths, ignore_path=ignore,
                              size_source=(str(file), e.size_line) if e.size else None))
    class_names, class_source = finish_classes(label_refs, names, num_classes, problems,
                                               names_from)
    if syn_list is not None and class_source == "names":
        class_source = "synsets"
    if not samples and not problems:
        problems.add(file, 0, "no images listed")
    problems.raise_if_any(f"{_kind} dataset {file}")
    return Dataset(name=name or dataset_name(file), root=root, format=_kind, split=None,
                   samples=samples, class_names=class_names, synsets=syn_list,
                   class_source=class_source)
