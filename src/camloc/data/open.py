"""Entry points: :func:`open_dataset` (read and check any supported format) and
:func:`detect_format`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from camloc.data._parse import Problems, is_image_file, list_dir, parse_count, path_keyword
from camloc.data.formats.cub import find_cub_root, read_cub
from camloc.data.formats.folder import read_folder
from camloc.data.formats.ilsvrc_csv import is_ilsvrc_csv, read_ilsvrc_csv
from camloc.data.formats.ilsvrc_xml import read_ilsvrc_xml
from camloc.data.formats.user import read_user
from camloc.data.formats.wsol import read_wsol
from camloc.data.sample import Dataset
from camloc.errors import ConfigError, DatasetError

__all__ = ["FORMATS", "READER_KW", "open_dataset", "detect_format"]

#: Format names :func:`open_dataset` accepts (besides ``"auto"``).
FORMATS = ("wsol", "cub", "ilsvrc-xml", "ilsvrc-csv", "csv", "json", "folder")
ALIASES = {
    "wsolevaluation": "wsol",
    "openimages": "wsol",
    "cub200": "cub",
    "cub-200-2011": "cub",
    "imagefolder": "folder",
    "jsonl": "json",
}


COMMON_KW = {"name", "classes", "check_images", "num_classes"}
#: The keywords each format takes (``None`` values count as not given).
READER_KW: dict[str, set[str]] = {
    "wsol": COMMON_KW | {"image_root", "mask_root", "synsets", "proxy"},
    "cub": COMMON_KW | {"image_root"},
    "ilsvrc-xml": COMMON_KW | {"annotations", "image_root", "images", "synsets"},
    "ilsvrc-csv": COMMON_KW | {"csv_file", "image_root", "images", "synsets"},
    "csv": COMMON_KW | {"image_root", "synsets"},
    "json": COMMON_KW | {"image_root", "synsets"},
    "folder": COMMON_KW,
}
_PATH_KW = ("image_root", "mask_root", "annotations", "images", "csv_file")
_BOOL_KW = ("check_images", "proxy")


def _check_split(split: Any) -> str | None:
    if split is None:
        return None
    if not isinstance(split, str) or not split.strip() or split in (".", "..") \
            or any(c in split for c in "/\\\0"):
        raise ConfigError(f"split={split!r}: expected a split name such as 'train', 'val' or "
                          "'test' (no path separators)")
    return split


def _check_keywords(fmt: str, kw: dict[str, Any]) -> dict[str, Any]:
    """The reader keywords, validated: ``None`` values dropped, unknown ones refused, types
    checked, ``num_classes`` parsed, ``image_root`` passed to the ILSVRC readers as ``images``."""
    kw = {k: v for k, v in kw.items() if v is not None}
    unknown = set(kw) - READER_KW[fmt]
    if unknown:
        raise ConfigError(f"open_dataset(format={fmt!r}) does not take {', '.join(sorted(unknown))}; "
                          f"it takes {', '.join(sorted(READER_KW[fmt]))}")
    for key in _PATH_KW:
        if key in kw:
            path_keyword(kw[key], key)
    for key in _BOOL_KW:
        if key in kw and not isinstance(kw[key], bool):
            raise ConfigError(f"{key}={kw[key]!r}: expected True or False")
    if "name" in kw and (not isinstance(kw["name"], str) or not kw["name"].strip()):
        raise ConfigError(f"name={kw['name']!r}: expected a non-empty string")
    if "num_classes" in kw:
        kw["num_classes"] = parse_count(kw["num_classes"], "num_classes")
    if fmt.startswith("ilsvrc") and "image_root" in kw:
        if "images" in kw:
            raise ConfigError("give the image folder once: image_root= or images=, not both")
        kw["images"] = kw.pop("image_root")
    return kw


def open_dataset(path: str | os.PathLike[str], format: str = "auto", split: str | None = None,
                 **kw: Any) -> Dataset:
    """Read a dataset's metadata into a :class:`Dataset`, checking everything.

    Args:
        path: the dataset folder (or, for ``csv``/``json``/``ilsvrc-csv``, the annotation file).
        format: one of :data:`FORMATS` or ``"auto"`` (see :func:`detect_format`).
        split: split to read. ``wsol``: the ``metadata/<split>/`` folder; ``cub``: ``"train"`` or
            ``"test"`` (``None``: all images); ``ilsvrc-*``: ``"val"`` (default) or ``"train"``;
            ``folder``: a sub-folder ``<path>/<split>/`` holding the class folders.
        **kw: reader options (a ``None`` value is the same as leaving the keyword out; see
            :data:`READER_KW` for which format takes which). Every reader: ``name`` (dataset
            name), ``classes`` (list of class names or a file with one name per line; index ==
            class id), ``check_images`` (default ``True``: check that each image file exists),
            ``num_classes`` (the class count: where the metadata names the classes it must
            agree, else it sets the count). ``image_root`` (every format but ``folder``): the
            folder image paths are relative to (``wsol``: default ``path``; ``cub``:
            ``CUB_200_2011/images``; ``csv``/``json``: the annotation file's folder;
            ``ilsvrc-*``: the image folder, also spelled ``images``). ``synsets`` (``wsol``,
            ``csv``, ``json``, ``ilsvrc-*``): a list of WordNet ids or a
            ``LOC_synset_mapping.txt``-style file; ILSVRC formats number classes in sorted synset
            order, the others take line i as class i. ``wsol``: ``mask_root`` (for mask paths;
            default ``image_root``), ``proxy`` (read ``image_ids_proxy.txt``). ``ilsvrc-xml``:
            ``annotations`` (XML folder). ``ilsvrc-csv``: ``csv_file``.

    Raises:
        DatasetError: missing or malformed metadata, missing images, bad boxes or class ids,
            image paths that leave the image folder, class lists of the wrong length; its
            ``problems`` list every ``(file, line, reason)`` found.
        ConfigError: an unknown format, split or keyword, or a keyword of the wrong type
            (``num_classes="abc"``).

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
    split = _check_split(split)
    fmt = str(format).lower() if format is not None else "auto"
    fmt = ALIASES.get(fmt, fmt)
    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(f"unknown dataset format {format!r}; use one of: auto, {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(p, split=split)
    kw = _check_keywords(fmt, kw)
    reader = {
        "wsol": read_wsol,
        "cub": read_cub,
        "ilsvrc-xml": read_ilsvrc_xml,
        "ilsvrc-csv": read_ilsvrc_csv,
        "csv": read_user,
        "json": read_user,
        "folder": read_folder,
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
    ``csv`` / ``json``; ``*.xml`` in the folder or one level down, or Kaggle's
    ``ILSVRC/Annotations/CLS-LOC/`` (or ``Annotations/CLS-LOC/``) -> ``ilsvrc-xml``;
    sub-folders holding images -> ``folder``. Kaggle's full download has both
    ``LOC_val_solution.csv`` and the XML folders: it is read as ``ilsvrc-csv`` (the same boxes;
    pass ``format="ilsvrc-xml"`` for the XML files, which also give image sizes).

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
            return "ilsvrc-csv" if is_ilsvrc_csv(p) else "csv"
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
    if find_cub_root(p) is not None:
        return "cub"
    if any(p.glob("LOC_*_solution.csv")):
        return "ilsvrc-csv"
    if (p / "annotations.csv").is_file():
        return "csv"
    if (p / "annotations.json").is_file():
        return "json"
    if any(p.glob("*.xml")) or (p / "Annotations" / "CLS-LOC").is_dir() \
            or (p / "ILSVRC" / "Annotations" / "CLS-LOC").is_dir() or any(p.glob("*/*.xml")):
        return "ilsvrc-xml"
    if split and (p / split).is_dir():
        p = p / split
    problems = Problems()
    for child in list_dir(p, problems):
        if child.is_dir() and not child.name.startswith(".") and \
                any(is_image_file(f) for f in list_dir(child, problems) if f.is_file()):
            return "folder"
    if problems:
        raise DatasetError(f"cannot tell the dataset format of {p}", problems.items)
    raise DatasetError(
        f"cannot tell the dataset format of {p}",
        [(str(p), 0, "found none of: image_ids.txt / metadata/ (wsol), images.txt + "
                     "image_class_labels.txt (cub), LOC_*_solution.csv (ilsvrc-csv), *.xml "
                     "(ilsvrc-xml), annotations.csv/.json (csv/json), class folders of images "
                     "(folder); pass format= explicitly")])
