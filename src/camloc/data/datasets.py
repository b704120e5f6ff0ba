"""Dataset readers: one in-memory index of images, labels, boxes and masks for every format.

:func:`open_dataset` reads a dataset's metadata, checks it (every file and line, every image on
disk) and returns a :class:`Dataset` of :class:`Sample` records. Formats (``format=``, or
``"auto"`` to detect):

``"wsol"``
    wsolevaluation metadata (``image_ids.txt``, ``class_labels.txt``, optional ``image_sizes.txt``,
    optional ``localization.txt`` with boxes or OpenImages masks). camloc extensions, both optional:
    ``masks.txt`` (OpenImages-style mask lines next to a box ``localization.txt``) and
    ``class_names.txt`` (one class name per line, line i = class id i).
``"cub"``
    CUB-200-2011 as distributed (``images.txt``, ``image_class_labels.txt``, ...).
``"ilsvrc-xml"``
    ILSVRC validation images plus per-image PASCAL-VOC XML box files.
``"ilsvrc-csv"``
    Kaggle's ``LOC_val_solution.csv`` + ``LOC_synset_mapping.txt``.
``"csv"`` / ``"json"``
    camloc's own simple format for your data (see ``docs/datasets.md``).
``"folder"``
    one sub-folder per class, labels only.

Boxes are ``(x0, y0, x1, y1)`` float64 in the original image's pixels, exactly as the metadata
gives them (no rounding, no +1 conversion). Problems are collected over the whole dataset and raised
together as one :class:`~camloc.errors.DatasetError` whose ``problems`` are
``(file, line, reason)`` tuples; nothing is skipped silently.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "cat").mkdir(); (root / "cat" / "a.png").write_bytes(b"")
0
>>> ds = open_dataset(root)
>>> ds.format, len(ds), ds.class_names, ds[0].label
('folder', 1, ['cat'], 0)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from camloc.errors import ConfigError, DatasetError, ImageError

__all__ = [
    "Sample",
    "Dataset",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "open_dataset",
    "detect_format",
    "load_gt_mask",
]

#: Format names :func:`open_dataset` accepts (besides ``"auto"``).
FORMATS = ("wsol", "cub", "ilsvrc-xml", "ilsvrc-csv", "csv", "json", "folder")
_ALIASES = {
    "wsolevaluation": "wsol",
    "openimages": "wsol",
    "cub200": "cub",
    "cub-200-2011": "cub",
    "imagefolder": "folder",
    "jsonl": "json",
}

#: File endings treated as images by the ``folder`` and ``ilsvrc-*`` readers (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm", ".pbm")

_EMPTY_BOXES = np.zeros((0, 4), dtype=np.float64)
_EMPTY_BOXES.setflags(write=False)


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    ``boxes`` is a read-only ``(B, 4)`` float64 array of ``x0, y0, x1, y1`` in the original image's
    pixels, exactly as the metadata gives them (``(0, 4)`` when the image has no box). ``size`` is
    ``(width, height)`` from the metadata, or ``None`` when the metadata does not give it (the
    image file is not opened). ``mask_paths`` / ``ignore_path`` are OpenImages-style instance masks
    and ignore region (PNG), read with :func:`load_gt_mask`.

    >>> s = Sample("a.jpg", Path("/d/a.jpg"), 3, [[1, 2, 30, 40]], (64, 48))
    >>> s.boxes.dtype, s.boxes.shape, s.has_boxes
    (dtype('float64'), (1, 4), True)
    """

    image_id: str
    path: Path
    label: int | None
    boxes: np.ndarray
    size: tuple[int, int] | None
    mask_paths: tuple[Path, ...] = ()
    ignore_path: Path | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = _EMPTY_BOXES
        else:
            boxes = np.array(boxes.reshape(-1, 4), dtype=np.float64)
            boxes.setflags(write=False)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "mask_paths", tuple(Path(p) for p in self.mask_paths))
        if self.ignore_path is not None:
            object.__setattr__(self, "ignore_path", Path(self.ignore_path))
        if self.size is not None:
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    @property
    def has_boxes(self) -> bool:
        """Whether the sample has at least one box."""
        return self.boxes.shape[0] > 0

    @property
    def has_masks(self) -> bool:
        """Whether the sample has at least one instance mask."""
        return len(self.mask_paths) > 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        return (self.image_id == other.image_id and self.path == other.path
                and self.label == other.label and self.size == other.size
                and self.mask_paths == other.mask_paths and self.ignore_path == other.ignore_path
                and np.array_equal(self.boxes, other.boxes))

    def __hash__(self) -> int:
        return hash((self.image_id, self.path, self.label))


@dataclass
class Dataset:
    """An ordered list of :class:`Sample` plus the class names (index == class id).

    ``root`` is the folder relative image ids resolve against; ``format`` the reader used;
    ``split`` the split read (``None`` when the dataset has no splits or all were read).
    ``synsets`` holds WordNet ids (index == class id) for the ILSVRC formats, else ``None``.

    >>> ds = Dataset("toy", Path("/d"), "csv", None,
    ...              [Sample(f"{i}.png", Path(f"/d/{i}.png"), i % 2, [], None) for i in range(5)],
    ...              ["a", "b"])
    >>> len(ds), ds.num_classes, [s.image_id for s in ds.shard(1, 2)]
    (5, 2, ['1.png', '3.png'])
    """

    name: str
    root: Path
    format: str
    split: str | None
    samples: list[Sample]
    class_names: list[str]
    synsets: list[str] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def has_boxes(self) -> bool:
        """Whether at least one sample has a box."""
        return any(s.boxes.shape[0] > 0 for s in self.samples)

    @property
    def has_masks(self) -> bool:
        """Whether at least one sample has instance masks."""
        return any(s.mask_paths for s in self.samples)

    @property
    def has_labels(self) -> bool:
        """Whether every sample has a class label."""
        return all(s.label is not None for s in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return replace(self, samples=self.samples[index])
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, format={self.format!r}, split={self.split!r}, "
                f"root={str(self.root)!r}, samples={len(self.samples)}, "
                f"classes={self.num_classes}, boxes={self.has_boxes}, masks={self.has_masks})")

    def index(self, image_id: str) -> int:
        """Position of the sample with ``image_id`` (``KeyError`` if absent)."""
        lookup = self.__dict__.get("_index_cache")
        if lookup is None or len(lookup) != len(self.samples):
            lookup = {s.image_id: i for i, s in enumerate(self.samples)}
            self.__dict__["_index_cache"] = lookup
        if image_id not in lookup:
            raise KeyError(image_id)
        return lookup[image_id]

    def shard(self, rank: int, world_size: int) -> Dataset:
        """Samples ``rank, rank + world_size, ...``: the shards of ranks ``0..world_size-1`` hold
        every sample exactly once and differ in size by at most one."""
        if isinstance(world_size, bool) or not isinstance(world_size, (int, np.integer)) \
                or world_size < 1:
            raise ConfigError(f"world_size must be an integer >= 1, got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) \
                or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        return replace(self, samples=self.samples[int(rank)::int(world_size)])

    def subset(self, indices: Iterable[int] | np.ndarray) -> Dataset:
        """A dataset of the samples at ``indices`` (integers, in the given order), or where a
        boolean array of ``len(self)`` is true."""
        arr = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        n = len(self.samples)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ConfigError(f"a boolean subset mask needs shape ({n},), got {arr.shape}")
            arr = np.flatnonzero(arr)
        elif arr.size == 0:
            arr = arr.astype(np.int64)
        elif not np.issubdtype(arr.dtype, np.integer):
            raise ConfigError(f"subset indices must be integers, got dtype {arr.dtype}")
        arr = arr.reshape(-1)
        bad = arr[(arr < -n) | (arr >= n)]
        if bad.size:
            raise ConfigError(f"subset index {int(bad[0])} is out of range for {n} samples")
        return replace(self, samples=[self.samples[int(i)] for i in arr])


# --------------------------------------------------------------------------------------------------
# Problem collection and small parsers
# --------------------------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, str]] = []

    def add(self, file: object, line: int, reason: str) -> None:
        self.items.append((str(file), int(line), reason))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, what: str) -> None:
        if self.items:
            raise DatasetError(f"cannot read {what}", self.items)


def _read_lines(path: Path, problems: _Problems) -> list[tuple[int, str]]:
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


def _unique_lines(path: Path, problems: _Problems, what: str) -> tuple[list[str], dict[str, int]]:
    """The non-blank lines of ``path`` in order, each once; a repeat is a problem naming the line
    of its first occurrence. Returns ``(lines, first line number of each)``."""
    order: list[str] = []
    first: dict[str, int] = {}
    for number, text in _read_lines(path, problems):
        if text in first:
            problems.add(path, number, f"duplicate {what} {text!r} (first on line {first[text]})")
            continue
        first[text] = number
        order.append(text)
    return order, first


def _csv_rows(reader: Any, ncols: int, file: Path,
              problems: _Problems) -> Iterator[tuple[int, list[str]]]:
    """Non-blank CSV rows with their line numbers; a row with the wrong field count is a problem."""
    for row in reader:
        number = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != ncols:
            problems.add(file, number, f"expected {ncols} fields, got {len(row)}")
            continue
        yield number, row


def _parse_float(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _parse_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _fmt_box(box: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"


def _box_problem(box: Sequence[float], size: tuple[int, int] | None) -> str | None:
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        return f"inverted box {_fmt_box(box)}: needs x0 <= x1 and y0 <= y1"
    if x0 < 0 or y0 < 0:
        return f"box {_fmt_box(box)} lies outside the image (negative coordinate)"
    if size is not None and (x1 > size[0] or y1 > size[1]):
        return f"box {_fmt_box(box)} lies outside the {size[0]}x{size[1]} image"
    return None


def _resolve(value: str | os.PathLike[str], base: Path) -> Path:
    """A keyword path: as given if it exists or is absolute, else relative to ``base``."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (base / p).resolve()


def _load_class_list(value: str | os.PathLike[str] | Sequence[str], base: Path,
                     problems: _Problems) -> list[str] | None:
    """Class names from a list, or from a file with one name per line."""
    if isinstance(value, (str, os.PathLike)):
        path = _resolve(value, base)
        if not path.is_file():
            problems.add(path, 0, "classes file not found")
            return None
        return _unique_lines(path, problems, "class name")[0]
    names = [str(n) for n in value]
    if len(set(names)) != len(names):
        raise ConfigError("classes: the list of class names has duplicates")
    return names


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _default_names(n: int) -> list[str]:
    return [f"class_{i}" for i in range(n)]


def _dataset_name(path: Path) -> str:
    if path.is_file():
        return path.parent.name or path.stem
    name = path.name
    return path.parent.name if name == "metadata" and path.parent.name else name


def _check_labels(labels: Iterable[tuple[int | None, str, int]], num_classes: int,
                  problems: _Problems) -> None:
    for label, file, line in labels:
        if label is not None and not 0 <= label < num_classes:
            problems.add(file, line, f"unknown class id {label} (the dataset has {num_classes} "
                                     f"classes, ids 0..{num_classes - 1})")


def _finish_classes(labels: list[tuple[int | None, str, int]], names: list[str] | None,
                    num_classes: int | None, problems: _Problems) -> list[str]:
    """Class names given explicit names, an explicit count, or the largest id seen."""
    if names is not None:
        if num_classes is not None and num_classes != len(names):
            raise ConfigError(f"num_classes={num_classes} but {len(names)} class names were given")
        _check_labels(labels, len(names), problems)
        return names
    if num_classes is not None:
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        _check_labels(labels, num_classes, problems)
        return _default_names(num_classes)
    for label, file, line in labels:
        if label is not None and label < 0:
            problems.add(file, line, f"unknown class id {label} (class ids start at 0)")
    top = max((lab for lab, _, _ in labels if lab is not None and lab >= 0), default=-1)
    return _default_names(top + 1)


_COMMON_KW = {"name", "classes", "check_images"}
_READER_KW: dict[str, set[str]] = {
    "wsol": _COMMON_KW | {"image_root", "mask_root", "num_classes", "proxy"},
    "cub": _COMMON_KW,
    "ilsvrc-xml": _COMMON_KW | {"annotations", "images", "synsets"},
    "ilsvrc-csv": _COMMON_KW | {"csv_file", "images", "synsets"},
    "csv": _COMMON_KW | {"image_root", "num_classes"},
    "json": _COMMON_KW | {"image_root", "num_classes"},
    "folder": _COMMON_KW,
}


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def open_dataset(path: str | os.PathLike[str], format: str = "auto", split: str | None = None,
                 **kw: Any) -> Dataset:
    """Read a dataset's metadata into a :class:`Dataset`, checking everything.

    Args:
        path: the dataset folder (or, for ``csv``/``json``/``ilsvrc-csv``, the annotation file).
        format: one of :data:`FORMATS` or ``"auto"`` (see :func:`detect_format`).
        split: split to read. ``wsol``: the ``metadata/<split>/`` folder; ``cub``: ``"train"`` or
            ``"test"`` (``None``: all images); ``ilsvrc-*``: ``"val"`` (default) or ``"train"``;
            ``folder``: a sub-folder ``<path>/<split>/`` holding the class folders.
        **kw: reader options. Every reader: ``name`` (dataset name), ``classes`` (list of class
            names or a file with one name per line; index == class id), ``check_images`` (default
            ``True``: check that each image file exists). ``wsol``: ``image_root`` (folder the ids
            are relative to; default ``path``), ``mask_root`` (for mask paths; default
            ``image_root``), ``num_classes``, ``proxy`` (read ``image_ids_proxy.txt``).
            ``ilsvrc-xml``: ``annotations`` (XML folder), ``images`` (image folder), ``synsets``
            (list or ``LOC_synset_mapping.txt``). ``ilsvrc-csv``: ``csv_file``, ``images``,
            ``synsets``. ``csv``/``json``: ``image_root`` (default: the annotation file's
            folder), ``num_classes``.

    Raises:
        DatasetError: missing or malformed metadata, missing images, bad boxes or class ids; its
            ``problems`` list every ``(file, line, reason)`` found.
        ConfigError: an unknown format, split or keyword.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.png").write_bytes(b"")
    >>> _ = (d / "annotations.csv").write_text("path,label,x0,y0,x1,y1\\na.png,1,2,3,40,50\\n")
    >>> ds = open_dataset(d)
    >>> ds.format, ds[0].label, ds[0].boxes.tolist()
    ('csv', 1, [[2.0, 3.0, 40.0, 50.0]])
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"dataset not found: {p}", [(str(p), 0, "no such file or folder")])
    p = p.resolve()
    fmt = str(format).lower()
    fmt = _ALIASES.get(fmt, fmt)
    if fmt == "auto":
        fmt = detect_format(p, split=split)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown dataset format {format!r}; use one of: auto, {', '.join(FORMATS)}")
    unknown = set(kw) - _READER_KW[fmt]
    if unknown:
        raise ConfigError(f"open_dataset(format={fmt!r}) does not take {', '.join(sorted(unknown))}; "
                          f"it takes {', '.join(sorted(_READER_KW[fmt]))}")
    reader = {
        "wsol": _read_wsol,
        "cub": _read_cub,
        "ilsvrc-xml": _read_ilsvrc_xml,
        "ilsvrc-csv": _read_ilsvrc_csv,
        "csv": _read_user,
        "json": _read_user,
        "folder": _read_folder,
    }[fmt]
    if fmt in ("csv", "json"):
        kw["_kind"] = fmt
    return reader(p, split, **kw)


def detect_format(path: str | os.PathLike[str], split: str | None = None) -> str:
    """Guess a dataset's format from the files present.

    Files: ``*.csv`` with an ``ImageId,PredictionString`` header -> ``ilsvrc-csv``, other
    ``*.csv`` -> ``csv``, ``*.json`` -> ``json``. Folders, in this order: ``image_ids.txt`` in
    the folder, ``metadata/``, ``metadata/<split>/``, ``<split>/`` or any ``metadata/*/`` ->
    ``wsol``; ``images.txt`` + ``image_class_labels.txt`` (or ``CUB_200_2011/``) -> ``cub``;
    ``LOC_*_solution.csv`` -> ``ilsvrc-csv``; ``annotations.csv`` / ``annotations.json`` ->
    ``csv`` / ``json``; ``*.xml`` in the folder or one level down (or
    ``Annotations/CLS-LOC/``) -> ``ilsvrc-xml``; sub-folders holding images -> ``folder``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "image_ids.txt").write_text("")
    0
    >>> detect_format(d)
    'wsol'
    """
    p = Path(path)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".csv":
            return "ilsvrc-csv" if _is_ilsvrc_csv(p) else "csv"
        if suffix in (".json", ".jsonl"):
            return "json"
        raise ConfigError(f"cannot tell the format of file {p}: expected .csv or .json "
                          "(or pass a folder)")
    if not p.is_dir():
        raise DatasetError(f"dataset not found: {p}", [(str(p), 0, "no such file or folder")])
    if (p / "image_ids.txt").is_file() or (p / "metadata" / "image_ids.txt").is_file():
        return "wsol"
    if split and ((p / "metadata" / split / "image_ids.txt").is_file()
                  or (p / split / "image_ids.txt").is_file()):
        return "wsol"
    if any(p.glob("metadata/*/image_ids.txt")) or any(p.glob("*/image_ids.txt")):
        return "wsol"
    if _find_cub_root(p) is not None:
        return "cub"
    if any(p.glob("LOC_*_solution.csv")):
        return "ilsvrc-csv"
    if (p / "annotations.csv").is_file():
        return "csv"
    if (p / "annotations.json").is_file():
        return "json"
    if any(p.glob("*.xml")) or (p / "Annotations" / "CLS-LOC").is_dir() or any(p.glob("*/*.xml")):
        return "ilsvrc-xml"
    if split and (p / split).is_dir():
        p = p / split
    for child in sorted(p.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and \
                any(_is_image_file(f) for f in child.iterdir() if f.is_file()):
            return "folder"
    raise DatasetError(
        f"cannot tell the dataset format of {p}",
        [(str(p), 0, "found none of: image_ids.txt / metadata/ (wsol), images.txt + "
                     "image_class_labels.txt (cub), LOC_*_solution.csv (ilsvrc-csv), *.xml "
                     "(ilsvrc-xml), annotations.csv/.json (csv/json), class folders of images "
                     "(folder); pass format= explicitly")])


def load_gt_mask(sample: Sample, size: tuple[int, int] | None = None) -> np.ndarray:
    """Ground-truth mask of an OpenImages-style sample: ``uint8 (H, W)``, 0 background,
    1 foreground (union of the instance masks), 255 ignore (ignore region minus foreground).

    As wsolevaluation's ``get_mask``: each PNG is read as grayscale, resized with nearest-neighbour
    interpolation to ``size=(width, height)`` when given (else kept at the first mask's size) and
    thresholded at 0.5. A sample without an ignore PNG has no 255 pixels.

    Raises:
        DatasetError: the sample has no instance masks.
        ImageError: a PNG cannot be read.
    """
    import cv2

    if not sample.mask_paths:
        raise DatasetError(f"{sample.image_id}: the sample has no ground-truth masks",
                           [(str(sample.path), 0, "no instance mask paths in the metadata")])
    if size is not None:
        if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
            raise ConfigError(f"size must be (width, height) with positive values, got {size!r}")
        target = (int(size[0]), int(size[1]))
    else:
        target = None

    def read(path: Path) -> np.ndarray:
        nonlocal target
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise ImageError(path, f"cannot read mask: {exc.strerror or exc}") from exc
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
        if img is None:
            raise ImageError(path, "cannot decode mask image")
        img = img.astype(np.float32)
        if target is None:
            target = (img.shape[1], img.shape[0])
        if (img.shape[1], img.shape[0]) != target:
            img = cv2.resize(img, target, interpolation=cv2.INTER_NEAREST)
        return img > 0.5

    fg = np.zeros((1, 1), dtype=bool)
    for i, mp in enumerate(sample.mask_paths):
        m = read(mp)
        fg = m if i == 0 else (fg | m)
    if sample.ignore_path is not None:
        ignore = read(sample.ignore_path) & ~fg
    else:
        ignore = np.zeros_like(fg)
    return fg.astype(np.uint8) + 255 * ignore.astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# wsol (wsolevaluation metadata)
# --------------------------------------------------------------------------------------------------


def _available_wsol_splits(p: Path) -> list[str]:
    found = {q.parent.name for q in p.glob("metadata/*/image_ids.txt")}
    found |= {q.parent.name for q in p.glob("*/image_ids.txt") if q.parent.name != "metadata"}
    return sorted(found)


def _find_wsol_metadata(p: Path, split: str | None) -> tuple[Path, str | None, bool]:
    """(metadata folder, split, whether it lies under ``<root>/metadata``)."""
    flat = [(p / "metadata", True), (p, False)]
    if split is not None:
        for cand, under in [(p / "metadata" / split, True), (p / split, False)]:
            if (cand / "image_ids.txt").is_file() or (cand / "image_ids_proxy.txt").is_file():
                return cand, split, under
        splits = _available_wsol_splits(p)
        flat_found = [c for c, _ in flat if (c / "image_ids.txt").is_file()]
        if flat_found and not splits:
            reason = (f"no split {split!r}: {flat_found[0]} has no splits; open it with "
                      "split=None")
        else:
            reason = (f"no split {split!r} (no metadata/{split}/image_ids.txt or "
                      f"{split}/image_ids.txt); splits found: {', '.join(splits) or 'none'}")
        raise DatasetError(f"cannot read wsol dataset {p}", [(str(p), 0, reason)])
    for cand, under in flat:
        if (cand / "image_ids.txt").is_file():
            return cand, None, under
    splits = _available_wsol_splits(p)
    if len(splits) == 1:
        return _find_wsol_metadata(p, splits[0])
    if splits:
        raise DatasetError(f"cannot read wsol dataset {p}",
                           [(str(p), 0, f"several splits ({', '.join(splits)}): pass split=")])
    raise DatasetError(f"cannot read wsol dataset {p}",
                       [(str(p / "metadata" / "image_ids.txt"), 0, "missing file")])


def _read_wsol(p: Path, split: str | None, *, image_root: str | os.PathLike[str] | None = None,
               mask_root: str | os.PathLike[str] | None = None,
               classes: Any = None, num_classes: int | None = None, proxy: bool = False,
               check_images: bool = True, name: str | None = None) -> Dataset:
    if p.is_file():
        raise ConfigError(f"format 'wsol' needs a folder, got the file {p}")
    meta, split, under_metadata = _find_wsol_metadata(p, split)
    root = _resolve(image_root, p) if image_root is not None else p
    mroot = _resolve(mask_root, p) if mask_root is not None else root
    problems = _Problems()

    ids_file = meta / ("image_ids_proxy.txt" if proxy else "image_ids.txt")
    labels_file = meta / "class_labels.txt"
    sizes_file = meta / "image_sizes.txt"
    loc_file = meta / "localization.txt"
    masks_file = meta / "masks.txt"
    names_file = meta / "class_names.txt"
    for required in (ids_file, labels_file):
        if not required.is_file():
            problems.add(required, 0, "missing file")
    problems.raise_if_any(f"wsol metadata in {meta}")

    # image_ids.txt
    order, id_line = _unique_lines(ids_file, problems, "image id")

    def known(file: Path, number: int, image_id: str) -> bool:
        if image_id in id_line:
            return True
        if not proxy:
            problems.add(file, number, f"image id {image_id!r} is not listed in {ids_file.name}")
        return False

    # class_labels.txt
    labels: dict[str, int] = {}
    label_line: dict[str, int] = {}
    for number, text in _read_lines(labels_file, problems):
        parts = text.rsplit(",", 1)
        if len(parts) != 2 or not parts[0]:
            problems.add(labels_file, number, "malformed line: expected 'path,class_id'")
            continue
        image_id, value = parts
        label = _parse_int(value)
        if label is None:
            problems.add(labels_file, number, f"class id {value.strip()!r} is not an integer")
            label_line.setdefault(image_id, number)
            continue
        if image_id in label_line:
            problems.add(labels_file, number, f"duplicate entry for {image_id!r} (first on line "
                                              f"{label_line[image_id]})")
            continue
        label_line[image_id] = number
        if known(labels_file, number, image_id):
            labels[image_id] = label

    # image_sizes.txt (optional)
    sizes: dict[str, tuple[int, int]] | None = None
    if sizes_file.is_file():
        sizes = {}
        size_line: dict[str, int] = {}
        for number, text in _read_lines(sizes_file, problems):
            parts = text.rsplit(",", 2)
            if len(parts) != 3 or not parts[0]:
                problems.add(sizes_file, number, "malformed line: expected 'path,width,height'")
                continue
            w, h = _parse_int(parts[1]), _parse_int(parts[2])
            if w is None or h is None or w < 1 or h < 1:
                problems.add(sizes_file, number, f"width and height must be positive integers, "
                                                 f"got {parts[1].strip()!r}, {parts[2].strip()!r}")
                size_line.setdefault(parts[0], number)
                continue
            if parts[0] in size_line:
                problems.add(sizes_file, number, f"duplicate entry for {parts[0]!r} (first on "
                                                 f"line {size_line[parts[0]]})")
                continue
            size_line[parts[0]] = number
            if known(sizes_file, number, parts[0]):
                sizes[parts[0]] = (w, h)

    # localization.txt (optional): boxes (5 fields) or OpenImages masks (3 fields)
    boxes: dict[str, list[tuple[float, float, float, float]]] | None = None
    box_lines: dict[str, list[int]] = {}
    masks: dict[str, list[Path]] | None = None
    ignores: dict[str, Path | None] = {}
    mask_source: Path | None = None

    def read_masks(file: Path, lines: list[tuple[int, str]]) -> None:
        nonlocal masks, mask_source
        masks, mask_source = {}, file
        first_line: dict[str, int] = {}
        for number, text in lines:
            parts = text.split(",")
            if len(parts) != 3 or not parts[0] or not parts[1].strip():
                problems.add(file, number, "malformed line: expected 'path,mask_png,ignore_png' "
                                           "(ignore may be empty)")
                continue
            image_id, mask_rel, ignore_rel = parts[0], parts[1].strip(), parts[2].strip()
            if not known(file, number, image_id):
                continue
            mask_path = mroot / mask_rel
            if check_images and not mask_path.is_file():
                problems.add(file, number, f"mask not found: {mask_path}")
            ignore_path = mroot / ignore_rel if ignore_rel else None
            if ignore_path is not None and check_images and not ignore_path.is_file():
                problems.add(file, number, f"ignore mask not found: {ignore_path}")
            if image_id not in masks:
                masks[image_id] = [mask_path]
                ignores[image_id] = ignore_path
                first_line[image_id] = number
            else:
                masks[image_id].append(mask_path)
                if ignore_path is not None:
                    if ignores[image_id] is None:
                        ignores[image_id] = ignore_path
                    elif ignores[image_id] != ignore_path:
                        problems.add(file, number, f"a second, different ignore mask for "
                                                   f"{image_id!r} (first on line "
                                                   f"{first_line[image_id]}); an image has one")

    if loc_file.is_file():
        lines = _read_lines(loc_file, problems)
        # boxes or masks: whichever line shape is the more common
        n_mask_lines = sum(1 for _, text in lines if text.count(",") == 2)
        if n_mask_lines * 2 > len(lines):
            read_masks(loc_file, lines)
        else:
            boxes = {}
            for number, text in lines:
                parts = text.rsplit(",", 4)
                if len(parts) != 5 or not parts[0]:
                    problems.add(loc_file, number, "malformed line: expected 'path,x0,y0,x1,y1'")
                    continue
                values = [_parse_float(v) for v in parts[1:]]
                if any(v is None for v in values):
                    problems.add(loc_file, number, "box coordinates must be finite numbers, got "
                                                   + ",".join(v.strip() for v in parts[1:]))
                    box_lines.setdefault(parts[0], []).append(number)
                    continue
                image_id = parts[0]
                if not known(loc_file, number, image_id):
                    continue
                box_lines.setdefault(image_id, []).append(number)
                box = tuple(float(v) for v in values)  # type: ignore[arg-type]
                why = _box_problem(box, sizes.get(image_id) if sizes is not None else None)
                if why:
                    problems.add(loc_file, number, why)
                    continue
                boxes.setdefault(image_id, []).append(box)  # type: ignore[arg-type]
    if masks_file.is_file():
        if masks is not None:
            problems.add(masks_file, 0, "masks given twice: localization.txt already holds masks")
        else:
            read_masks(masks_file, _read_lines(masks_file, problems))

    # class names
    names = None
    if classes is not None:
        names = _load_class_list(classes, meta, problems)
    elif names_file.is_file():
        names = _load_class_list(names_file, meta, problems)

    # every listed image: label, size, localization, file on disk
    samples: list[Sample] = []
    label_refs: list[tuple[int | None, str, int]] = []
    missing_images = 0
    for image_id in order:
        number = id_line[image_id]
        if image_id not in labels:
            if image_id not in label_line:
                problems.add(ids_file, number, f"{image_id!r} has no entry in class_labels.txt")
            continue
        label_refs.append((labels[image_id], str(labels_file), label_line[image_id]))
        size = None
        if sizes is not None:
            size = sizes.get(image_id)
            if size is None and image_id not in size_line:
                problems.add(ids_file, number, f"{image_id!r} has no entry in image_sizes.txt")
        if boxes is not None and image_id not in box_lines:
            problems.add(ids_file, number, f"{image_id!r} has no box in localization.txt")
        if masks is not None and image_id not in masks:
            problems.add(ids_file, number, f"{image_id!r} has no mask in {mask_source.name}")  # type: ignore[union-attr]
        path = root / image_id
        if check_images and not path.is_file():
            missing_images += 1
            problems.add(ids_file, number, f"image not found: {path}")
        samples.append(Sample(
            image_id=image_id,
            path=path,
            label=labels[image_id],
            boxes=np.asarray(boxes.get(image_id, []) if boxes is not None else [], dtype=np.float64),
            size=size,
            mask_paths=tuple(masks.get(image_id, ())) if masks is not None else (),
            ignore_path=ignores.get(image_id),
        ))
    class_names = _finish_classes(label_refs, names, num_classes, problems)
    if missing_images and missing_images == len(order):
        problems.items.insert(0, (str(ids_file), 0, f"none of the {len(order)} images exist under "
                                                    f"{root}; pass image_root= (the folder the "
                                                    "ids are relative to)"))
    problems.raise_if_any(f"wsol dataset {p}" + (f" split {split!r}" if split else ""))
    return Dataset(name=name or _dataset_name(p), root=root, format="wsol", split=split,
                   samples=samples, class_names=class_names)


# --------------------------------------------------------------------------------------------------
# CUB-200-2011
# --------------------------------------------------------------------------------------------------


def _find_cub_root(p: Path) -> Path | None:
    for cand in (p, p / "CUB_200_2011"):
        if (cand / "images.txt").is_file() and (cand / "image_class_labels.txt").is_file():
            return cand
    return None


def _read_cub(p: Path, split: str | None, *, classes: Any = None, check_images: bool = True,
              name: str | None = None) -> Dataset:
    if split not in (None, "train", "test"):
        raise ConfigError(f"CUB splits are 'train' and 'test' (or None for all), got {split!r}")
    root = _find_cub_root(p) if p.is_dir() else None
    problems = _Problems()
    if root is None:
        for f in ("images.txt", "image_class_labels.txt"):
            if not (p / f).is_file():
                problems.add(p / f, 0, "missing file")
        problems.raise_if_any(f"CUB dataset {p}")
        root = p
    images_file = root / "images.txt"
    labels_file = root / "image_class_labels.txt"
    classes_file = root / "classes.txt"
    split_file = root / "train_test_split.txt"
    boxes_file = root / "bounding_boxes.txt"
    if not classes_file.is_file() and classes is None:
        problems.add(classes_file, 0, "missing file")
    if split is not None and not split_file.is_file():
        problems.add(split_file, 0, f"missing file (needed for split={split!r})")
    problems.raise_if_any(f"CUB dataset {root}")

    def id_table(file: Path, n_values: int, what: str) -> dict[str, tuple[int, list[str]]]:
        out: dict[str, tuple[int, list[str]]] = {}
        for number, text in _read_lines(file, problems):
            parts = text.split(None, n_values) if n_values == 1 else text.split()
            if len(parts) != n_values + 1:
                problems.add(file, number, f"malformed line: expected '{what}'")
                continue
            if parts[0] in out:
                problems.add(file, number, f"duplicate id {parts[0]} (first on line "
                                           f"{out[parts[0]][0]})")
                continue
            out[parts[0]] = (number, parts[1:])
        return out

    images = id_table(images_file, 1, "image_id path")
    # classes.txt
    names: list[str] | None
    if classes is not None:
        names = _load_class_list(classes, root, problems)
    else:
        table = id_table(classes_file, 1, "class_id name")
        names = []
        for expected, (key, (number, (cname,))) in enumerate(table.items(), start=1):
            if _parse_int(key) != expected:
                problems.add(classes_file, number, f"class ids must run 1, 2, 3, ...: expected "
                                                   f"{expected}, got {key!r}")
            names.append(cname)
    n_classes = len(names or [])

    def check_known(file: Path, table: dict[str, tuple[int, list[str]]]) -> None:
        for key, (number, _) in table.items():
            if key not in images:
                problems.add(file, number, f"image id {key} is not listed in images.txt")

    labels_tab = id_table(labels_file, 1, "image_id class_id")
    check_known(labels_file, labels_tab)
    split_tab = id_table(split_file, 1, "image_id is_training_image") if split_file.is_file() else None
    if split_tab is not None:
        check_known(split_file, split_tab)

    boxes: dict[str, list[tuple[float, ...]]] = {}
    box_ids: set[str] = set()
    if boxes_file.is_file():
        for number, text in _read_lines(boxes_file, problems):
            parts = text.split()
            if len(parts) != 5:
                problems.add(boxes_file, number, "malformed line: expected 'image_id x y width height'")
                continue
            values = [_parse_float(v) for v in parts[1:]]
            if any(v is None for v in values):
                problems.add(boxes_file, number, f"box values must be finite numbers, got "
                                                 f"{' '.join(parts[1:])}")
                continue
            if parts[0] not in images:
                problems.add(boxes_file, number, f"image id {parts[0]} is not listed in images.txt")
                continue
            box_ids.add(parts[0])
            x, y, w, h = (float(v) for v in values)  # type: ignore[arg-type]
            if w < 0 or h < 0:
                problems.add(boxes_file, number, f"negative box width or height ({w:g}, {h:g})")
                continue
            box = (x, y, x + w, y + h)
            why = _box_problem(box, None)
            if why:
                problems.add(boxes_file, number, why)
                continue
            boxes.setdefault(parts[0], []).append(box)

    samples: list[Sample] = []
    label_refs: list[tuple[int | None, str, int]] = []
    for key, (number, (rel,)) in images.items():
        if key not in labels_tab:
            problems.add(images_file, number, f"image id {key} has no entry in image_class_labels.txt")
            continue
        lnum, (lvalue,) = labels_tab[key]
        cls = _parse_int(lvalue)
        if cls is None:
            problems.add(labels_file, lnum, f"class id {lvalue!r} is not an integer")
            continue
        if split_tab is not None:
            if key not in split_tab:
                problems.add(images_file, number, f"image id {key} has no entry in "
                                                  "train_test_split.txt")
                continue
            snum, (flag,) = split_tab[key]
            if flag not in ("0", "1"):
                problems.add(split_file, snum, f"is_training_image must be 0 or 1, got {flag!r}")
                continue
            if split is not None and (flag == "1") != (split == "train"):
                continue
        if not (1 <= cls <= n_classes):
            problems.add(labels_file, lnum, f"unknown class id {cls} (classes.txt has ids "
                                            f"1..{n_classes})")
            continue
        label_refs.append((cls - 1, str(labels_file), lnum))
        path = root / "images" / rel
        if check_images and not path.is_file():
            problems.add(images_file, number, f"image not found: {path}")
        if boxes_file.is_file() and key not in box_ids:
            problems.add(images_file, number, f"image id {key} has no box in bounding_boxes.txt")
        samples.append(Sample(image_id=rel, path=path, label=cls - 1,
                              boxes=np.asarray(boxes.get(key, []), dtype=np.float64), size=None))
    problems.raise_if_any(f"CUB dataset {root}" + (f" split {split!r}" if split else ""))
    return Dataset(name=name or "CUB", root=root, format="cub", split=split, samples=samples,
                   class_names=list(names or []))


# --------------------------------------------------------------------------------------------------
# ILSVRC (XML boxes, Kaggle CSV)
# --------------------------------------------------------------------------------------------------


_SYNSET_RE = re.compile(r"^n\d{8}$")


def _read_synset_mapping(file: Path, problems: _Problems) -> tuple[list[str], dict[str, str]]:
    """``LOC_synset_mapping.txt`` lines ``n01440764 tench, Tinca tinca`` (or a bare synset list)."""
    synsets: list[str] = []
    descr: dict[str, str] = {}
    for number, text in _read_lines(file, problems):
        parts = text.split(None, 1)
        syn = parts[0]
        if syn in descr:
            problems.add(file, number, f"duplicate synset {syn}")
            continue
        synsets.append(syn)
        descr[syn] = parts[1].strip() if len(parts) > 1 else syn
    return synsets, descr


def _synset_classes(synsets_kw: Any, search: Sequence[Path], seen: Iterable[str],
                    problems: _Problems) -> tuple[list[str], list[str], str]:
    """(sorted synsets, class names, source): from ``synsets=`` (list or file), else
    ``LOC_synset_mapping.txt`` in one of ``search``, else the sorted synsets seen."""
    descr: dict[str, str] = {}
    if synsets_kw is not None and not isinstance(synsets_kw, (str, os.PathLike)):
        syns = [str(s) for s in synsets_kw]
        source = "synsets="
    else:
        file = None
        if synsets_kw is not None:
            file = _resolve(synsets_kw, search[0])
            if not file.is_file():
                problems.add(file, 0, "synset mapping file not found")
                return [], [], ""
        else:
            for d in search:
                if (d / "LOC_synset_mapping.txt").is_file():
                    file = d / "LOC_synset_mapping.txt"
                    break
        if file is not None:
            syns, descr = _read_synset_mapping(file, problems)
            source = str(file)
        else:
            syns = sorted(set(seen))
            source = "synsets seen"
    syns = sorted(set(syns))
    return syns, [descr.get(s, s) for s in syns], source


def _image_dir_candidates(p: Path, split: str) -> list[Path]:
    return [p, p / "ILSVRC" / "Data" / "CLS-LOC" / split, p / "Data" / "CLS-LOC" / split,
            p / split, p / "images"]


def _has_images(d: Path) -> bool:
    try:
        return d.is_dir() and any(_is_image_file(f) for f in d.iterdir())
    except OSError:
        return False


def _find_dir(p: Path, explicit: Any, candidates: list[Path], has_content: Any, what: str,
              keyword: str, problems: _Problems) -> Path | None:
    """The folder holding ``what``: ``explicit`` if given, else the first candidate that
    ``has_content``, else the only such subfolder of ``p``; otherwise a problem naming ``keyword``."""
    if explicit is not None:
        d = _resolve(explicit, p)
        if not d.is_dir():
            problems.add(d, 0, f"{what} folder not found")
            return None
        return d
    for cand in candidates:
        if cand.is_dir() and has_content(cand):
            return cand
    others = [c for c in sorted(p.iterdir()) if c.is_dir() and has_content(c)] if p.is_dir() else []
    if len(others) == 1:
        return others[0]
    problems.add(p, 0, f"cannot find the {what} folder" + (
        f" (several candidates: {', '.join(o.name for o in others)})" if others else "")
        + f"; pass {keyword}=")
    return None


def _find_image_dir(p: Path, split: str, images: Any, problems: _Problems) -> Path | None:
    return _find_dir(p, images, _image_dir_candidates(p, split), _has_images, "image", "images",
                     problems)


def _stem_index(d: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in sorted(d.iterdir()):
        if _is_image_file(f):
            out.setdefault(f.stem, f)
            out.setdefault(f.name, f)
    return out


class _XmlNode:
    __slots__ = ("tag", "line", "children", "text")

    def __init__(self, tag: str, line: int) -> None:
        self.tag, self.line = tag, line
        self.children: list[_XmlNode] = []
        self.text = ""

    def find(self, tag: str) -> _XmlNode | None:
        for c in self.children:
            if c.tag == tag:
                return c
        return None

    def findall(self, tag: str) -> list[_XmlNode]:
        return [c for c in self.children if c.tag == tag]


def _parse_xml(file: Path, problems: _Problems) -> _XmlNode | None:
    """A minimal XML tree that keeps each element's line number."""
    from xml.parsers import expat

    parser = expat.ParserCreate()
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
        node.text = node.text.strip()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(file.read_bytes(), True)
    except expat.ExpatError as exc:
        problems.add(file, exc.lineno, f"malformed XML: {expat.ErrorString(exc.code)}")
        return None
    except OSError as exc:
        problems.add(file, 0, f"cannot read file: {exc.strerror or exc}")
        return None
    return root[0] if root else None


def _find_xml_dir(p: Path, split: str, annotations: Any, problems: _Problems) -> Path | None:
    cands = [p, p / "ILSVRC" / "Annotations" / "CLS-LOC" / split,
             p / "Annotations" / "CLS-LOC" / split, p / "Annotations"]
    return _find_dir(p, annotations, cands, lambda d: any(d.glob("*.xml")), "XML annotation",
                     "annotations", problems)


def _read_ilsvrc_xml(p: Path, split: str | None, *, annotations: Any = None, images: Any = None,
                     synsets: Any = None, classes: Any = None, check_images: bool = True,
                     name: str | None = None) -> Dataset:
    """ILSVRC images + one PASCAL-VOC XML per image.

    Class id = the synset's index in **sorted** synset order, the synsets taken from ``synsets=``
    (a list, or a ``LOC_synset_mapping.txt``-style file), else from ``LOC_synset_mapping.txt`` in
    the dataset folder or its parent, else from the sorted set of synsets found in the XML files
    (then ids depend on which classes are present; pass ``synsets=`` for the standard 1000).
    Class names are the mapping's descriptions (the synset itself when there is none).
    """
    if p.is_file():
        raise ConfigError(f"format 'ilsvrc-xml' needs a folder, got the file {p}")
    sp = split or "val"
    problems = _Problems()
    xml_dir = _find_xml_dir(p, sp, annotations, problems)
    img_dir = _find_image_dir(p, sp, images, problems)
    problems.raise_if_any(f"ILSVRC XML dataset {p}")
    assert xml_dir is not None and img_dir is not None
    by_stem = _stem_index(img_dir)
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
        size_node = tree.find("size")
        if size_node is not None:
            wn, hn = size_node.find("width"), size_node.find("height")
            w = _parse_int(wn.text) if wn is not None else None
            h = _parse_int(hn.text) if hn is not None else None
            if w is None or h is None or w < 1 or h < 1:
                problems.add(xml, size_node.line, "<size> needs positive integer <width> and <height>")
            else:
                size = (w, h)
        syns, boxes = [], []
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
                vals.append(_parse_float(node.text) if node is not None else None)
            if any(v is None for v in vals):
                problems.add(xml, bb.line, "<bndbox> needs numeric xmin, ymin, xmax, ymax")
                continue
            box = tuple(float(v) for v in vals)  # type: ignore[arg-type]
            why = _box_problem(box, size)
            if why:
                problems.add(xml, bb.line, why)
                continue
            syns.append((name_node.text, name_node.line))
            boxes.append(box)
        if len({s for s, _ in syns}) > 1:
            problems.add(xml, syns[1][1] if len(syns) > 1 else tree.line,
                         f"objects of several classes ({', '.join(sorted({s for s, _ in syns}))}); "
                         "an ILSVRC image has one label")
        seen_syn.extend(s for s, _ in syns)
        records.append((xml, img, syns[0] if syns else None, boxes, size))
    for f in sorted(set(by_stem.values()) - used):
        problems.add(f, 0, f"image has no XML annotation in {xml_dir}")
    syn_list, names, _source = _synset_classes(synsets, [p, p.parent, xml_dir], seen_syn, problems)
    index = {s: i for i, s in enumerate(syn_list)}
    if classes is not None:
        override = _load_class_list(classes, p, problems)
        if override is not None and len(override) != len(syn_list):
            problems.add(str(classes), 0, f"{len(override)} class names for {len(syn_list)} synsets")
        elif override is not None:
            names = override
    samples = []
    for xml, img, syn, boxes, size in records:
        label = None
        if syn is not None:
            if syn[0] not in index:
                problems.add(xml, syn[1], f"unknown synset {syn[0]} (not in the synset list)")
                continue
            label = index[syn[0]]
        samples.append(Sample(image_id=img.relative_to(img_dir).as_posix(), path=img, label=label,
                              boxes=np.asarray(boxes, dtype=np.float64), size=size))
    problems.raise_if_any(f"ILSVRC XML dataset {p}")
    return Dataset(name=name or _dataset_name(p), root=img_dir, format="ilsvrc-xml", split=split,
                   samples=samples, class_names=names, synsets=syn_list)


def _is_ilsvrc_csv(file: Path) -> bool:
    try:
        with file.open(encoding="utf-8-sig", newline="") as fh:
            header = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    cols = [c.strip() for c in header.split(",")]
    return "ImageId" in cols and "PredictionString" in cols


def _read_ilsvrc_csv(p: Path, split: str | None, *, csv_file: Any = None, images: Any = None,
                     synsets: Any = None, classes: Any = None, check_images: bool = True,
                     name: str | None = None) -> Dataset:
    """Kaggle's ILSVRC localization CSV: ``ImageId,PredictionString`` with
    ``PredictionString = "syn x0 y0 x1 y1 syn x0 y0 x1 y1 ..."``.

    Class id = index in **sorted** synset order, from ``synsets=`` (list or file), else
    ``LOC_synset_mapping.txt`` beside the CSV or in the dataset folder, else the sorted synsets
    seen in the CSV. ``image_id`` is the CSV's ``ImageId``; the image is ``<images>/<ImageId>.JPEG``
    (or ``<images>/<synset>/<ImageId>.JPEG`` for the train split).
    """
    sp = split or "val"
    problems = _Problems()
    if csv_file is not None:
        file = _resolve(csv_file, p if p.is_dir() else p.parent)
    elif p.is_file():
        file = p
    else:
        file = p / f"LOC_{sp}_solution.csv"
    base = p if p.is_dir() else p.parent
    if not file.is_file():
        problems.add(file, 0, "missing file")
        problems.raise_if_any(f"ILSVRC CSV dataset {p}")
    img_dir = _find_image_dir(base, sp, images, problems)
    problems.raise_if_any(f"ILSVRC CSV dataset {p}")
    assert img_dir is not None
    rows = []
    seen_syn: list[str] = []
    first: dict[str, int] = {}
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {file}", [(str(file), 0, f"cannot read file: {exc}")]) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or "ImageId" not in [h.strip() for h in header] \
            or "PredictionString" not in [h.strip() for h in header]:
        problems.add(file, 1, "header must have the columns ImageId,PredictionString")
        problems.raise_if_any(f"ILSVRC CSV dataset {p}")
    assert header is not None
    cols = [h.strip() for h in header]
    i_id, i_pred = cols.index("ImageId"), cols.index("PredictionString")
    for number, row in _csv_rows(reader, len(cols), file, problems):
        image_id = row[i_id].strip()
        tokens = row[i_pred].split()
        if not image_id:
            problems.add(file, number, "empty ImageId")
            continue
        if image_id in first:
            problems.add(file, number, f"duplicate ImageId {image_id} (first on line "
                                       f"{first[image_id]})")
            continue
        first[image_id] = number
        if not tokens or len(tokens) % 5:
            problems.add(file, number, "PredictionString must be groups of 'synset x0 y0 x1 y1'")
            continue
        syns, boxes, ok = [], [], True
        for k in range(0, len(tokens), 5):
            vals = [_parse_float(t) for t in tokens[k + 1:k + 5]]
            if any(v is None for v in vals) or _parse_float(tokens[k]) is not None:
                problems.add(file, number, f"bad box group {' '.join(tokens[k:k + 5])!r}: "
                                           "expected 'synset x0 y0 x1 y1'")
                ok = False
                break
            box = tuple(float(v) for v in vals)  # type: ignore[arg-type]
            why = _box_problem(box, None)
            if why:
                problems.add(file, number, why)
                ok = False
                break
            syns.append(tokens[k])
            boxes.append(box)
        if not ok:
            continue
        if len(set(syns)) > 1:
            problems.add(file, number, f"boxes of several classes ({', '.join(sorted(set(syns)))}); "
                                       "an ILSVRC image has one label")
            continue
        seen_syn.append(syns[0])
        rows.append((number, image_id, syns[0], boxes))
    syn_list, names, _ = _synset_classes(synsets, [file.parent, base], seen_syn, problems)
    if classes is not None:
        override = _load_class_list(classes, base, problems)
        if override is not None and len(override) != len(syn_list):
            problems.add(str(classes), 0, f"{len(override)} class names for {len(syn_list)} synsets")
        elif override is not None:
            names = override
    index = {s: i for i, s in enumerate(syn_list)}
    stems: dict[str, Path] | None = None
    samples = []
    for number, image_id, syn, boxes in rows:
        if syn not in index:
            problems.add(file, number, f"unknown synset {syn} (not in the synset list)")
            continue
        path = img_dir / f"{image_id}.JPEG"
        if check_images and not path.is_file():
            alt = img_dir / syn / f"{image_id}.JPEG"
            if alt.is_file():
                path = alt
            else:
                if stems is None:
                    stems = _stem_index(img_dir)
                found = stems.get(image_id)
                if found is None:
                    problems.add(file, number, f"image not found: {path}")
                else:
                    path = found
        samples.append(Sample(image_id=image_id, path=path, label=index[syn],
                              boxes=np.asarray(boxes, dtype=np.float64), size=None))
    problems.raise_if_any(f"ILSVRC CSV dataset {file}")
    return Dataset(name=name or _dataset_name(base), root=img_dir, format="ilsvrc-csv",
                   split=split, samples=samples, class_names=names, synsets=syn_list)


# --------------------------------------------------------------------------------------------------
# camloc's own CSV / JSON
# --------------------------------------------------------------------------------------------------


_CSV_COLUMNS = ("path", "label", "x0", "y0", "x1", "y1", "width", "height", "mask", "ignore")


class _Entry:
    __slots__ = ("path", "label", "label_line", "boxes", "size", "masks", "ignore", "line")

    def __init__(self, path: str, line: int) -> None:
        self.path, self.line = path, line
        self.label: str | int | None = None
        self.label_line = line
        self.boxes: list[tuple[float, float, float, float]] = []
        self.size: tuple[int, int] | None = None
        self.masks: list[str] = []
        self.ignore: str | None = None


def _parse_user_csv(file: Path, problems: _Problems) -> list[_Entry]:
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(file, 0, f"cannot read file: {exc}")
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
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
    for number, row in _csv_rows(reader, len(cols), file, problems):
        rec = {c: v.strip() for c, v in zip(cols, row)}
        path = rec["path"]
        if not path:
            problems.add(file, number, "empty path")
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
            w, h = _parse_int(rec["width"]), _parse_int(rec["height"])
            if w is None or h is None or w < 1 or h < 1:
                problems.add(file, number, "width and height must be positive integers")
            elif e.size is not None and e.size != (w, h):
                problems.add(file, number, f"size {w}x{h} differs from {e.size[0]}x{e.size[1]} "
                                           f"given earlier for {path!r}")
            else:
                e.size = (w, h)
        if "x0" in rec:
            raw = [rec[c] for c in ("x0", "y0", "x1", "y1")]
            if any(raw):
                vals = [_parse_float(v) for v in raw]
                if any(v is None for v in vals):
                    problems.add(file, number, f"box coordinates must be finite numbers, got "
                                               f"{','.join(raw)}")
                else:
                    box = tuple(float(v) for v in vals)  # type: ignore[arg-type]
                    why = _box_problem(box, e.size)
                    if why:
                        problems.add(file, number, why)
                    else:
                        e.boxes.append(box)  # type: ignore[arg-type]
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
    except ValueError:
        return None


def _parse_user_json(file: Path, problems: _Problems) -> tuple[list[_Entry], list[str] | None]:
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
    classes = None
    if isinstance(data, dict):
        if not isinstance(data.get("images"), list):
            problems.add(file, 1, "a JSON object needs an 'images' list (and optionally 'classes')")
            return [], None
        if "classes" in data:
            if not isinstance(data["classes"], list) or not all(isinstance(c, str) for c in data["classes"]):
                problems.add(file, 1, "'classes' must be a list of strings")
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
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
                problems.add(file, number, where + "size must be [width, height], positive integers")
            else:
                e.size = (size[0], size[1])
        for b in item.get("boxes") or []:
            if (not isinstance(b, list) or len(b) != 4 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in b)):
                problems.add(file, number, where + f"box {b!r} must be [x0, y0, x1, y1] numbers")
                continue
            box = tuple(float(v) for v in b)
            why = _box_problem(box, e.size)
            if why:
                problems.add(file, number, where + why)
            else:
                e.boxes.append(box)  # type: ignore[arg-type]
        masks = item.get("masks") or []
        if not isinstance(masks, list) or not all(isinstance(m, str) for m in masks):
            problems.add(file, number, where + "masks must be a list of PNG paths")
        else:
            e.masks = list(masks)
        ign = item.get("ignore")
        if ign is not None and not isinstance(ign, str):
            problems.add(file, number, where + "ignore must be a PNG path")
        elif ign:
            e.ignore = ign
    return list(entries.values()), classes


def _read_user(p: Path, split: str | None, *, _kind: str, image_root: Any = None,
               classes: Any = None, num_classes: int | None = None, check_images: bool = True,
               name: str | None = None) -> Dataset:
    if split is not None:
        raise ConfigError(f"the {_kind} format has no splits (write one file per split)")
    file = p if p.is_file() else p / f"annotations.{_kind}"
    problems = _Problems()
    if not file.is_file():
        problems.add(file, 0, "missing file")
        problems.raise_if_any(f"{_kind} dataset {p}")
    base = file.parent
    root = _resolve(image_root, base) if image_root is not None else base
    if _kind == "csv":
        entries, inline_classes = _parse_user_csv(file, problems), None
    else:
        entries, inline_classes = _parse_user_json(file, problems)
    names: list[str] | None = None
    if classes is not None:
        names = _load_class_list(classes, base, problems)
    elif inline_classes is not None:
        names = inline_classes
    elif (base / "classes.txt").is_file():
        names = _load_class_list(base / "classes.txt", base, problems)
    # labels: ids, or names (looked up in the class list; without one, sorted unique names)
    def as_int(v: Any) -> int | None:
        if isinstance(v, int):
            return v
        return _parse_int(v) if isinstance(v, str) and re.fullmatch(r"\s*-?\d+\s*", v) else None

    raw = [e.label for e in entries if e.label is not None]
    by_name = names is None and any(as_int(v) is None for v in raw)
    if by_name:
        names = sorted({str(v) for v in raw})
    lookup = {n: i for i, n in enumerate(names)} if names is not None else {}
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
                              mask_paths=mask_paths, ignore_path=ignore))
    class_names = _finish_classes(label_refs, names, num_classes, problems)
    if not samples and not problems:
        problems.add(file, 0, "no images listed")
    problems.raise_if_any(f"{_kind} dataset {file}")
    return Dataset(name=name or _dataset_name(file), root=root, format=_kind, split=None,
                   samples=samples, class_names=class_names)


# --------------------------------------------------------------------------------------------------
# folder per class
# --------------------------------------------------------------------------------------------------


def _read_folder(p: Path, split: str | None, *, classes: Any = None, check_images: bool = True,
                 name: str | None = None) -> Dataset:
    """``<root>/<class>/**/<image>``: class names = sorted folder names (or ``classes=``, which
    must name exactly the folders). Hidden files and files directly in ``<root>`` are not
    samples; any other non-image file in a class folder is reported as a problem."""
    if p.is_file():
        raise ConfigError(f"format 'folder' needs a folder, got the file {p}")
    root = p / split if split is not None else p
    problems = _Problems()
    if not root.is_dir():
        problems.add(root, 0, f"split folder {split!r} not found")
        problems.raise_if_any(f"folder dataset {p}")
    dirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        problems.add(root, 0, "no class folders")
        problems.raise_if_any(f"folder dataset {root}")
    names = dirs
    if classes is not None:
        given = _load_class_list(classes, root, problems)
        if given is not None:
            if sorted(given) != dirs:
                problems.add(root, 0, f"classes= must name exactly the class folders "
                                      f"({len(dirs)} folders, {len(given)} names)")
            else:
                names = given
    samples = []
    for label, cname in enumerate(names):
        if cname not in dirs:
            continue
        for f in sorted((root / cname).rglob("*")):
            rel = f.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or f.is_dir():
                continue
            if not _is_image_file(f):
                problems.add(f, 0, "not an image file (by its extension); remove it or rename it")
                continue
            samples.append(Sample(image_id=rel.as_posix(), path=f, label=label,
                                  boxes=_EMPTY_BOXES, size=None))
    problems.raise_if_any(f"folder dataset {root}")
    return Dataset(name=name or p.name, root=root, format="folder", split=split,
                   samples=samples, class_names=list(names))
