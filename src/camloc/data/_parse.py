"""Helpers shared by the dataset readers: problem collection, tolerant line and CSV reading,
number and box checks, class lists. Private to :mod:`camloc.data`."""

from __future__ import annotations

import math
import os
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
    for row in reader:
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


def parse_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
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


def load_class_list(value: str | os.PathLike[str] | Sequence[str], base: Path,
                     problems: Problems) -> list[str] | None:
    """Class names from a list, or from a file with one name per line."""
    if isinstance(value, (str, os.PathLike)):
        path = resolve(value, base)
        if not path.is_file():
            problems.add(path, 0, "classes file not found")
            return None
        return unique_lines(path, problems, "class name")[0]
    names = [str(n) for n in value]
    if len(set(names)) != len(names):
        raise ConfigError("classes: the list of class names has duplicates")
    return names


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
                    num_classes: int | None, problems: Problems) -> list[str]:
    """Class names given explicit names, an explicit count, or the largest id seen."""
    if names is not None:
        if num_classes is not None and num_classes != len(names):
            raise ConfigError(f"num_classes={num_classes} but {len(names)} class names were given")
        check_labels(labels, len(names), problems)
        return names
    if num_classes is not None:
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        check_labels(labels, num_classes, problems)
        return default_names(num_classes)
    for label, file, line in labels:
        if label is not None and label < 0:
            problems.add(file, line, f"unknown class id {label} (class ids start at 0)")
    top = max((lab for lab, _, _ in labels if lab is not None and lab >= 0), default=-1)
    return default_names(top + 1)
