"""``folder``: one sub-folder per class (labels only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camloc.data._parse import Problems, is_image_file, list_dir, load_class_list
from camloc.data.paths import walk_files
from camloc.data.sample import EMPTY_BOXES, Dataset, Sample
from camloc.errors import ConfigError


def read_folder(p: Path, split: str | None, *, classes: Any = None,
                num_classes: int | None = None, check_images: bool = True,
                name: str | None = None) -> Dataset:
    """``<root>/<class>/**/<image>``: class names = sorted folder names (or ``classes=``, which
    must name exactly the folders; ``num_classes=`` must equal their count). Hidden files and
    files directly in ``<root>`` are not samples; any other non-image file in a class folder,
    and any folder that cannot be read, is reported as a problem."""
    if p.is_file():
        raise ConfigError(f"format 'folder' needs a folder, got the file {p}")
    root = p / split if split is not None else p
    problems = Problems()
    if not root.is_dir():
        problems.add(root, 0, f"split folder {split!r} not found")
        problems.raise_if_any(f"folder dataset {p}")
    dirs = [d.name for d in list_dir(root, problems) if d.is_dir() and not d.name.startswith(".")]
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
    if num_classes is not None and num_classes != len(names):
        problems.add(root, 0, f"{len(names)} class folders, but num_classes={num_classes}")

    def unreadable(folder: Path, exc: OSError) -> None:
        problems.add(folder, 0, f"cannot read folder: {exc.strerror or exc}; fix its "
                                "permissions or move it out of the dataset")

    samples = []
    for label, cname in enumerate(names):
        if cname not in dirs:
            continue
        for f in sorted(walk_files(root / cname, unreadable)):
            if not is_image_file(f):
                problems.add(f, 0, "not an image file (by its extension); remove it or rename it")
                continue
            samples.append(Sample(image_id=f.relative_to(root).as_posix(), path=f, label=label,
                                  boxes=EMPTY_BOXES, size=None))
    problems.raise_if_any(f"folder dataset {root}")
    return Dataset(name=name or p.name, root=root, format="folder", split=split,
                   samples=samples, class_names=list(names))
