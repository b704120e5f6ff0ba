"""Helpers shared by the dataset readers: problem collection, tolerant line and CSV reading,
number and box checks, class lists. Private to :mod:`camloc.data`."""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from camloc.errors import ConfigError, DatasetError

#: File endings treated as images by the ``folder`` and ``ilsvrc-*`` readers (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm", ".pbm")


class Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, str]] = []

    def add(self, file: object, line: int, reason: str) -> None:
        self.items.append((str(file), int(line), reason))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, what: str) -> None:
        if self.items:
            raise DatasetError(f"cannot read {what}", self.items)


def read_lines(path: Path, problems: Problems) -> list[tuple[int, str]]:
    """Non-blank lines of a text file as ``(line_number, stripped_text)``; tolerant of a BOM,
    ``\\r\\n`` and blank lines."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.add(path, 0, f"cannot read file: {exc.strerror or exc}")
        return []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.add(path, line, "not valid UTF-8 text")
        return []
    out = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if line:
            out.append((number, line))
    return out


def unique_lines(path: Path, problems: Problems, what: str) -> tuple[list[str], dict[str, int]]:
    """The non-blank lines of ``path`` in order, each once; a repeat is a problem naming the line
    of its first occurrence. Returns ``(lines, first line number of each)``."""
    order: list[str] = []
    first: dict[str, int] = {}
    for number, text in read_lines(path, problems):
        if text in first:
            problems.add(path, number, f"duplicate {what} {text!r} (first on line {first[text]})")
            continue
        first[text] = number
        order.append(text)
    return order, first


def csv_rows(reader: Any, ncols: int, file: Path,
              problems: Problems) -> Iterator[tuple[int, list[str]]]:
    """Non-blank CSV rows with their line numbers; a row with the wrong field count is a problem."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(file, reader.line_num, f"malformed CSV: {exc}")
            return
        number = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != ncols:
            problems.add(file, number, f"expected {ncols} fields, got {len(row)}")
            continue
        yield number, row


def parse_float(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_INT_RE = re.compile(r"\s*[+-]?[0-9]+\s*")


def parse_int(text: str) -> int | None:
    """An integer written with ASCII digits (optional sign, surrounding spaces), else ``None``."""
    if not _INT_RE.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        return None


def fmt_box(box: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"


def box_problem(box: Sequence[float], size: tuple[int, int] | None) -> str | None:
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        return f"inverted box {fmt_box(box)}: needs x0 <= x1 and y0 <= y1"
    if x0 < 0 or y0 < 0:
        return f"box {fmt_box(box)} lies outside the image (negative coordinate)"
    if size is not None and (x1 > size[0] or y1 > size[1]):
        return f"box {fmt_box(box)} lies outside the {size[0]}x{size[1]} image"
    return None


def resolve(value: str | os.PathLike[str], base: Path) -> Path:
    """A keyword path: as given if it exists or is absolute, else relative to ``base``."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (base / p).resolve()


def path_keyword(value: Any, keyword: str) -> None:
    """A ``ConfigError`` unless ``value`` (a path keyword such as ``image_root=``) is a path."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConfigError(f"{keyword}={value!r}: expected a folder or file path")


def root_keyword(value: Any, keyword: str, base: Path) -> Path:
    """An existing folder given by a keyword (``image_root=``, ``mask_root=``): resolved as
    :func:`resolve` does; a missing folder is a ``DatasetError`` naming the keyword."""
    path_keyword(value, keyword)
    folder = resolve(value, base)
    if not folder.is_dir():
        raise DatasetError(f"{keyword} not found: {folder}",
                           [(str(folder), 0, f"{keyword}: no such folder")])
    return folder


#: The most classes a dataset may have (``num_classes=``, class lists, ids).
MAX_CLASSES = 1_000_000


def parse_count(value: Any, keyword: str = "num_classes") -> int:
    """A class count given by the user (``num_classes=10`` or ``"10"``), checked to lie in
    ``1..MAX_CLASSES``; anything else is a :class:`ConfigError` naming the keyword."""
    count: int | None = None
    if isinstance(value, bool):
        count = None
    elif isinstance(value, int) or (hasattr(value, "__index__") and not isinstance(value, float)):
        try:
            count = int(value.__index__())
        except (TypeError, ValueError):
            count = None
    elif isinstance(value, str):
        count = parse_int(value)
    if count is None or not 1 <= count <= MAX_CLASSES:
        raise ConfigError(f"{keyword}={value!r}: expected a whole number of classes from 1 to "
                          f"{MAX_CLASSES:,}")
    return count


def inferred_class_limit(distinct_labels: int) -> int:
    """Without class names or ``num_classes=``, the class count is the largest id + 1; ids at or
    beyond this limit (1,000 or 100 per distinct label, whichever is larger) are refused, so
    one stray id such as 99999999999 cannot demand billions of class names."""
    return min(MAX_CLASSES, max(1000, 100 * distinct_labels))


def load_class_list(value: str | os.PathLike[str] | Sequence[str], base: Path,
                    problems: Problems) -> list[str] | None:
    """Class names from a list, or from a file with one name per line."""
    if isinstance(value, (str, os.PathLike)):
        path = resolve(value, base)
        if not path.is_file():
            problems.add(path, 0, "classes file not found")
            return None
        names = unique_lines(path, problems, "class name")[0]
        if len(names) > MAX_CLASSES:
            problems.add(path, 0, f"{len(names):,} class names; camloc takes at most "
                                  f"{MAX_CLASSES:,}")
            return None
        return names
    if isinstance(value, bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"classes={value!r}: expected a list of class names or a file with one "
                          "name per line")
    names = [str(n) for n in value]
    if len(set(names)) != len(names):
        raise ConfigError("classes: the list of class names has duplicates")
    if len(names) > MAX_CLASSES:
        raise ConfigError(f"classes: {len(names):,} names; camloc takes at most {MAX_CLASSES:,}")
    return names


def class_list_source(value: Any, base: Path) -> str:
    """Where a ``classes=`` value came from, for messages: the file, or ``classes=``."""
    return str(resolve(value, base)) if isinstance(value, (str, os.PathLike)) else "classes="


def same_length(names: list[str], source: str, other: list[str], other_source: str,
                problems: Problems) -> bool:
    """Two class lists that must describe the same classes: a length mismatch is a problem
    (never padded or cut)."""
    if len(names) == len(other):
        return True
    problems.add(source, 0, f"{len(names)} class names, but {other_source} has {len(other)}; "
                            "both must list the same classes")
    return False


def list_dir(folder: Path, problems: Problems | None = None) -> list[Path]:
    """The entries of ``folder``, sorted; a folder that cannot be listed is a problem (when
    ``problems`` is given) and lists as empty, never an exception."""
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        if problems is not None:
            problems.add(folder, 0, f"cannot read folder: {exc.strerror or exc}")
        return []


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def default_names(n: int) -> list[str]:
    return [f"class_{i}" for i in range(n)]


def dataset_name(path: Path) -> str:
    if path.is_file():
        return path.parent.name or path.stem
    name = path.name
    return path.parent.name if name == "metadata" and path.parent.name else name


def check_labels(labels: Iterable[tuple[int | None, str, int]], num_classes: int,
                 problems: Problems) -> None:
    for label, file, line in labels:
        if label is not None and not 0 <= label < num_classes:
            problems.add(file, line, f"unknown class id {label} (the dataset has {num_classes} "
                                     f"classes, ids 0..{num_classes - 1})")


def finish_classes(labels: list[tuple[int | None, str, int]], names: list[str] | None,
                   num_classes: int | None, problems: Problems,
                   names_from: str = "classes=") -> tuple[list[str], str]:
    """``(class names, class_source)`` from explicit names (``"names"``), an explicit count
    (``"num_classes"``) or the largest id seen (``"max-id"``). ``names_from`` names where the
    names came from (a file, or ``classes=``) for the messages."""
    if names is not None:
        if num_classes is not None and num_classes != len(names):
            reason = (f"{len(names)} class names, but num_classes={num_classes}; give a list of "
                      f"exactly {num_classes} names, or leave num_classes out")
            if names_from == "classes=":
                raise ConfigError(f"classes: {reason}")
            problems.add(names_from, 0, reason)
        top = max((lab for lab, _, _ in labels if lab is not None), default=-1)
        if top >= len(names) and names_from != "classes=":
            problems.add(names_from, 0, f"{len(names)} class name(s), but the labels use class "
                                        f"ids up to {top}: give one name per class (line i names "
                                        "class i)")
        check_labels(labels, len(names), problems)
        return names, "names"
    if num_classes is not None:
        check_labels(labels, num_classes, problems)
        return default_names(num_classes), "num_classes"
    for label, file, line in labels:
        if label is not None and label < 0:
            problems.add(file, line, f"unknown class id {label} (class ids start at 0)")
    ids = [lab for lab, _, _ in labels if lab is not None and lab >= 0]
    limit = inferred_class_limit(len(set(ids)))
    too_big = [(lab, file, line) for lab, file, line in labels if lab is not None and lab >= limit]
    for lab, file, line in too_big:
        problems.add(file, line, f"class id {lab} is too large for {len(set(ids))} distinct "
                                 f"labels without class names (limit {limit - 1:,}): pass "
                                 f"num_classes= (at most {MAX_CLASSES:,}) or the class names")
    if too_big:
        return [], "max-id"
    return default_names(max(ids, default=-1) + 1), "max-id"
