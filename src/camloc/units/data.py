"""The images a units run reads: a labelled dataset, or a folder of images without labels.

A dataset's labels are used as the model's class ids only when they mean the same classes:

- the dataset has no class names of its own (``class_0, class_1, ...``, e.g. ILSVRC in wsol
  format): its ids are taken as the model's ids (they must be below the model's class count);
- otherwise every dataset class name must match a model class name (the full name or its first
  comma-separated synonym, case-insensitively), and labels are mapped by name; a probe head's
  classes match the dataset it was fitted on this way.

Anything else is refused with the names that do not match (``ignore_labels=True`` reads the
images as unlabelled instead).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from camloc.errors import ConfigError, DatasetError

__all__ = ["UnitItem", "UnitsData", "align_labels", "open_units_data"]

_NO_BOXES = np.zeros((0, 4), dtype=np.float64)
_METADATA_SUFFIXES = {".csv", ".json", ".txt", ".xml"}


@dataclass(frozen=True)
class UnitItem:
    """One image: ``boxes`` ``(B, 4)`` ``x0, y0, x1, y1`` in original pixels; ``size`` is
    ``(width, height)`` when the metadata gives it."""

    image_id: str
    path: Path
    label: int | None = None
    boxes: np.ndarray = field(default_factory=lambda: _NO_BOXES)
    size: tuple[int, int] | None = None


@dataclass
class UnitsData:
    """The items of a run and what their labels are."""

    name: str
    root: str
    format: str
    items: list[UnitItem]
    class_names: list[str]  # the dataset's own names (index == its label)
    note: str = ""

    @property
    def labeled(self) -> bool:
        return bool(self.items) and all(it.label is not None for it in self.items)

    @property
    def has_boxes(self) -> bool:
        return any(len(it.boxes) for it in self.items)


def _is_default_names(names: list[str]) -> bool:
    return all(n == f"class_{i}" for i, n in enumerate(names))


def _looks_like_image_folder(p: Path) -> bool:
    """A folder with image files at its top level and no metadata files, or one image file."""
    from camloc.data.images import IMAGE_EXTENSIONS

    if p.is_file():
        return p.suffix.lower() in IMAGE_EXTENSIONS
    if not p.is_dir():
        return False
    entries = [q for q in p.iterdir() if not q.name.startswith(".")]
    if any(q.is_file() and q.suffix.lower() in _METADATA_SUFFIXES for q in entries):
        return False
    if (p / "metadata").is_dir():
        return False
    return any(q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS for q in entries)


def _image_items(p: Path) -> UnitsData:
    from camloc.data.images import find_images

    paths, problems = find_images([p])
    if not paths:
        reason = problems[0][1] if problems else "no images"
        raise DatasetError(f"{p}: no images to read", [(str(p), 0, reason)])
    base = p if p.is_dir() else p.parent
    items = [UnitItem(image_id=q.relative_to(base).as_posix() if q.is_relative_to(base) else str(q),
                      path=q) for q in paths]
    return UnitsData(name=p.name or str(p), root=str(base), format="images", items=items,
                     class_names=[], note="images without labels: per-unit views only")


def open_units_data(path: str | os.PathLike[str], format: str = "auto", split: str | None = None,
                    ignore_labels: bool = False) -> UnitsData:
    """Read ``path``: any dataset :func:`camloc.data.datasets.open_dataset` reads, or (``format=
    "images"``, or ``"auto"`` on a folder of images with no metadata files) plain images.

    Raises:
        DatasetError: unreadable metadata, or no images.
        ConfigError: a bad format or split.
    """
    from camloc.data.datasets import open_dataset

    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"dataset not found: {p}", [(str(p), 0, "no such file or folder")])
    fmt = str(format).lower()
    if fmt == "images" or (fmt == "auto" and _looks_like_image_folder(p)):
        if split is not None:
            raise ConfigError(f"--split {split!r}: a folder of images has no splits")
        return _image_items(p)
    ds = open_dataset(p, format=fmt, split=split)
    items = [UnitItem(s.image_id, Path(s.path), None if ignore_labels else s.label,
                      np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4), s.size)
             for s in ds.samples]
    if not items:
        raise DatasetError(f"{p}: the dataset has no images", [(str(p), 0, "no samples")])
    note = "labels ignored (--ignore-labels)" if ignore_labels else ""
    return UnitsData(name=ds.name, root=str(ds.root), format=ds.format, items=items,
                     class_names=list(ds.class_names), note=note)


def align_labels(data: UnitsData, model_classes: list[str]) -> UnitsData:
    """Return ``data`` with labels turned into the model's class ids (see the module docstring).

    Raises:
        ConfigError: the dataset's classes are not the model's.
    """
    labels = sorted({it.label for it in data.items if it.label is not None})
    if not labels:
        return data
    n_model = len(model_classes)
    if _is_default_names(data.class_names):
        if labels[-1] >= n_model:
            raise ConfigError(f"dataset {data.name!r}: class id {labels[-1]} is out of range for "
                              f"a model with {n_model} classes (pass --ignore-labels to read the "
                              f"images without labels)")
        return data
    lookup: dict[str, int] = {}
    for i, name in enumerate(model_classes):
        lookup.setdefault(name.strip().lower(), i)
        lookup.setdefault(name.split(",")[0].strip().lower(), i)
    mapping: dict[int, int] = {}
    missing = []
    for lab in labels:
        name = data.class_names[lab] if lab < len(data.class_names) else f"class_{lab}"
        idx = lookup.get(name.strip().lower())
        if idx is None:
            missing.append(name)
        else:
            mapping[lab] = idx
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ConfigError(f"dataset {data.name!r}: classes {shown}{more} are not classes of the "
                          f"model; the units of a class need the model's own class (use a probe "
                          f"head fitted on these classes with --head, or --ignore-labels)")
    if all(k == v for k, v in mapping.items()):
        return data
    items = [it if it.label is None else replace(it, label=mapping[it.label]) for it in data.items]
    return replace(data, items=items, note=(data.note + "; " if data.note else "")
                   + "labels mapped to the model's classes by name")
