"""``cub``: CUB-200-2011 as distributed (``images.txt``, ``image_class_labels.txt``,
``classes.txt``, ``train_test_split.txt``, ``bounding_boxes.txt``, ``images/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from camloc.data._parse import (Problems, box_problem, class_list_source, load_class_list,
                                parse_float, parse_int, read_lines, root_keyword, same_length)
from camloc.data.paths import id_problem
from camloc.data.sample import Dataset, Sample
from camloc.errors import ConfigError


def find_cub_root(p: Path) -> Path | None:
    for cand in (p, p / "CUB_200_2011"):
        if (cand / "images.txt").is_file() and (cand / "image_class_labels.txt").is_file():
            return cand
    return None


def read_cub(p: Path, split: str | None, *, classes: Any = None, num_classes: int | None = None,
             image_root: Any = None, check_images: bool = True, name: str | None = None
             ) -> Dataset:
    """``image_root``: the folder ``images.txt`` paths are relative to (default
    ``CUB_200_2011/images``). ``num_classes``: checked against the class list."""
    if split not in (None, "train", "test"):
        raise ConfigError(f"CUB splits are 'train' and 'test' (or None for all), got {split!r}")
    root = find_cub_root(p) if p.is_dir() else None
    problems = Problems()
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
    images_dir = root_keyword(image_root, "image_root", root) if image_root is not None \
        else root / "images"

    def id_table(file: Path, n_values: int, what: str) -> dict[str, tuple[int, list[str]]]:
        out: dict[str, tuple[int, list[str]]] = {}
        for number, text in read_lines(file, problems):
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
    names: list[str] | None = None
    from_file: list[str] | None = None
    if classes_file.is_file():
        table = id_table(classes_file, 1, "class_id name")
        from_file = []
        for expected, (key, (number, (cname,))) in enumerate(table.items(), start=1):
            if parse_int(key) != expected:
                problems.add(classes_file, number, f"class ids must run 1, 2, 3, ...: expected "
                                                   f"{expected}, got {key!r}")
            from_file.append(cname)
    if classes is not None:
        names = load_class_list(classes, root, problems)
        if names is not None and from_file is not None:
            same_length(names, class_list_source(classes, root), from_file, classes_file.name,
                        problems)
    else:
        names = from_file
    n_classes = len(names or [])
    if num_classes is not None and names is not None and num_classes != n_classes:
        problems.add(classes_file if classes is None else class_list_source(classes, root), 0,
                     f"{n_classes} classes, but num_classes={num_classes}")

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
    box_at: dict[str, list[tuple[str, int]]] = {}
    if boxes_file.is_file():
        for number, text in read_lines(boxes_file, problems):
            parts = text.split()
            if len(parts) != 5:
                problems.add(boxes_file, number, "malformed line: expected 'image_id x y width height'")
                continue
            values = [parse_float(v) for v in parts[1:]]
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
            why = box_problem(box, None)
            if why:
                problems.add(boxes_file, number, why)
                continue
            boxes.setdefault(parts[0], []).append(box)
            box_at.setdefault(parts[0], []).append((str(boxes_file), number))

    samples: list[Sample] = []
    label_refs: list[tuple[int | None, str, int]] = []
    for key, (number, (rel,)) in images.items():
        if key not in labels_tab:
            problems.add(images_file, number, f"image id {key} has no entry in image_class_labels.txt")
            continue
        lnum, (lvalue,) = labels_tab[key]
        cls = parse_int(lvalue)
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
        why = id_problem(rel)
        if why is not None:
            problems.add(images_file, number, f"{rel!r}: {why}")
            continue
        path = images_dir / rel
        if check_images and not path.is_file():
            problems.add(images_file, number, f"image not found: {path}")
        if boxes_file.is_file() and key not in box_ids:
            problems.add(images_file, number, f"image id {key} has no box in bounding_boxes.txt")
        samples.append(Sample(image_id=rel, path=path, label=cls - 1,
                              boxes=np.asarray(boxes.get(key, []), dtype=np.float64), size=None,
                              box_lines=tuple(box_at.get(key, ()))))
    problems.raise_if_any(f"CUB dataset {root}" + (f" split {split!r}" if split else ""))
    return Dataset(name=name or "CUB", root=root, format="cub", split=split, samples=samples,
                   class_names=list(names or []))
