"""``wsol``: wsolevaluation metadata (``image_ids.txt``, ``class_labels.txt``, optional
``image_sizes.txt``, ``localization.txt`` with boxes or OpenImages masks; camloc's optional
``masks.txt`` and ``class_names.txt``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from camloc.data._parse import (Problems, box_problem, class_list_source, dataset_name,
                                finish_classes, load_class_list, parse_float, parse_int,
                                read_lines, root_keyword, same_length, unique_lines)
from camloc.data.formats._synsets import load_synsets
from camloc.data.paths import id_problem
from camloc.data.sample import Dataset, Sample
from camloc.errors import ConfigError, DatasetError


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


def read_wsol(p: Path, split: str | None, *, image_root: str | os.PathLike[str] | None = None,
              mask_root: str | os.PathLike[str] | None = None,
              classes: Any = None, num_classes: int | None = None, synsets: Any = None,
              proxy: bool = False, check_images: bool = True, name: str | None = None) -> Dataset:
    if p.is_file():
        raise ConfigError(f"format 'wsol' needs a folder, got the file {p}")
    meta, split, under_metadata = _find_wsol_metadata(p, split)
    root = root_keyword(image_root, "image_root", p) if image_root is not None else p
    mroot = root_keyword(mask_root, "mask_root", p) if mask_root is not None else root
    problems = Problems()

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
    order, id_line = unique_lines(ids_file, problems, "image id")
    unsafe = set()
    for image_id in order:
        why = id_problem(image_id)
        if why is not None:
            problems.add(ids_file, id_line[image_id], f"{image_id!r}: {why}")
            unsafe.add(image_id)

    def known(file: Path, number: int, image_id: str) -> bool:
        if image_id in id_line:
            return True
        if not proxy:
            problems.add(file, number, f"image id {image_id!r} is not listed in {ids_file.name}")
        return False

    # class_labels.txt
    labels: dict[str, int] = {}
    label_line: dict[str, int] = {}
    for number, text in read_lines(labels_file, problems):
        parts = text.rsplit(",", 1)
        if len(parts) != 2 or not parts[0]:
            problems.add(labels_file, number, "malformed line: expected 'path,class_id'")
            continue
        image_id, value = parts
        label = parse_int(value)
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
        for number, text in read_lines(sizes_file, problems):
            parts = text.rsplit(",", 2)
            if len(parts) != 3 or not parts[0]:
                problems.add(sizes_file, number, "malformed line: expected 'path,width,height'")
                continue
            w, h = parse_int(parts[1]), parse_int(parts[2])
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
    box_at: dict[str, list[tuple[str, int]]] = {}  # (file, line) of each accepted box
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
            why = next((f"{rel!r}: {w}" for rel in (mask_rel, ignore_rel) if rel
                        for w in [id_problem(rel)] if w), None)
            if why is not None:
                problems.add(file, number, why)
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
        lines = read_lines(loc_file, problems)
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
                values = [parse_float(v) for v in parts[1:]]
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
                why = box_problem(box, sizes.get(image_id) if sizes is not None else None)
                if why:
                    problems.add(loc_file, number, why)
                    continue
                boxes.setdefault(image_id, []).append(box)  # type: ignore[arg-type]
                box_at.setdefault(image_id, []).append((str(loc_file), number))
    if masks_file.is_file():
        if masks is not None:
            problems.add(masks_file, 0, "masks given twice: localization.txt already holds masks")
        else:
            read_masks(masks_file, read_lines(masks_file, problems))

    # class names: classes=, else class_names.txt, else synsets=; where two are given they must
    # have the same length
    names, names_from = None, "classes="
    if classes is not None:
        names, names_from = load_class_list(classes, meta, problems), class_list_source(classes, meta)
    if names_file.is_file():
        from_file = load_class_list(names_file, meta, problems)
        if names is None:
            names, names_from = from_file, str(names_file)
        elif from_file is not None:
            same_length(names, names_from, from_file, names_file.name, problems)
    syn_list = None
    if synsets is not None:
        got = load_synsets(synsets, meta, problems)
        if got is not None:
            syn_list, descr, syn_from = got
            if names is None:
                names, names_from = [descr.get(s, s) for s in syn_list], syn_from
            else:
                same_length(names, names_from, syn_list, "synsets=", problems)

    # every listed image: label, size, localization, file on disk
    samples: list[Sample] = []
    label_refs: list[tuple[int | None, str, int]] = []
    missing_images = 0
    for image_id in order:
        number = id_line[image_id]
        if image_id in unsafe:
            continue
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
            size_source=(str(sizes_file), size_line[image_id]) if size is not None else None,
            box_lines=tuple(box_at.get(image_id, ())),
        ))
    class_names, class_source = finish_classes(label_refs, names, num_classes, problems,
                                               names_from)
    if syn_list is not None and class_source == "names":
        class_source = "synsets"
    if missing_images and missing_images == len(order):
        problems.items.insert(0, (str(ids_file), 0, f"none of the {len(order)} images exist under "
                                                    f"{root}; pass image_root= (the folder the "
                                                    "ids are relative to)"))
    problems.raise_if_any(f"wsol dataset {p}" + (f" split {split!r}" if split else ""))
    return Dataset(name=name or dataset_name(p), root=root, format="wsol", split=split,
                   samples=samples, class_names=class_names, synsets=syn_list,
                   class_source=class_source)
