"""``folder``: one sub-folder per class (labels only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camloc.data._parse import Problems, is_image_file, load_class_list
from camloc.data.sample import EMPTY_BOXES, Dataset, Sample
from camloc.errors import ConfigError


def read_folder(p: Path, split: str | None, *, classes: Any = None, check_images: bool = True,
                 name: str | None = None) -> Dataset:
    """``<root>/<class>/**/<image>``: class names = sorted folder names (or ``classes=``, which
    must name exactly the folders). Hidden files and files directly in ``<root>`` are not
    samples; any other non-image file in a class folder is reported as a problem."""
    if p.is_file():
        raise ConfigError(f"format 'folder' needs a folder, got the file {p}")
    root = p / split if split is not None else p
    problems = Problems()
    if not root.is_dir():
        problems.add(root, 0, f"split folder {split!r} not found")
        problems.raise_if_any(f"folder dataset {p}")
    dirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        problems.add(root, 0, "no class folders")
        problems.raise_if_any(f"folder dataset {root}")
    names = dirs
    if classes is not None:
        given = load_class_list(classes, root, problems)
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
            if not is_image_file(f):
                problems.add(f, 0, "not an image file (by its extension); remove it or rename it")
                continue
            samples.append(Sample(image_id=rel.as_posix(), path=f, label=label,
                                  boxes=EMPTY_BOXES, size=None))
    problems.raise_if_any(f"folder dataset {root}")
    return Dataset(name=name or p.name, root=root, format="folder", split=split,
                   samples=samples, class_names=list(names))
