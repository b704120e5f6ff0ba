"""``ilsvrc-csv``: Kaggle's ``LOC_<split>_solution.csv`` + ``LOC_synset_mapping.txt``."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from camloc.data._parse import Problems, box_problem, csv_rows, dataset_name, parse_float, resolve
from camloc.data.formats._ilsvrc import find_image_dir, stem_index
from camloc.data.formats._synsets import ilsvrc_classes
from camloc.data.paths import id_problem
from camloc.data.sample import Dataset, Sample
from camloc.errors import DatasetError


def is_ilsvrc_csv(file: Path) -> bool:
    try:
        with file.open(encoding="utf-8-sig", newline="") as fh:
            header = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    cols = [c.strip() for c in header.split(",")]
    return "ImageId" in cols and "PredictionString" in cols


def read_ilsvrc_csv(p: Path, split: str | None, *, csv_file: Any = None, images: Any = None,
                    synsets: Any = None, classes: Any = None, num_classes: int | None = None,
                    check_images: bool = True, name: str | None = None) -> Dataset:
    """Kaggle's ILSVRC localization CSV: ``ImageId,PredictionString`` with
    ``PredictionString = "syn x0 y0 x1 y1 syn x0 y0 x1 y1 ..."``.

    Class id = index in **sorted** synset order, from ``synsets=`` (list or file), else
    ``LOC_synset_mapping.txt`` beside the CSV or in the dataset folder, else the sorted synsets
    seen in the CSV (``class_source`` ``"synsets-seen"``). ``image_id`` is the CSV's
    ``ImageId``; the image is ``<images>/<ImageId>.JPEG`` (or ``<images>/<synset>/<ImageId>.JPEG``
    for the train split). ``num_classes=`` is checked against the synset count.
    """
    sp = split or "val"
    problems = Problems()
    if csv_file is not None:
        file = resolve(csv_file, p if p.is_dir() else p.parent)
    elif p.is_file():
        file = p
    else:
        file = p / f"LOC_{sp}_solution.csv"
    base = p if p.is_dir() else p.parent
    if not file.is_file():
        problems.add(file, 0, "missing file")
        problems.raise_if_any(f"ILSVRC CSV dataset {p}")
    img_dir = find_image_dir(base, sp, images, problems)
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
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DatasetError(f"cannot read {file}", [(str(file), 1, f"malformed CSV: {exc}")]) from exc
    if header is None or "ImageId" not in [h.strip() for h in header] \
            or "PredictionString" not in [h.strip() for h in header]:
        problems.add(file, 1, "header must have the columns ImageId,PredictionString")
        problems.raise_if_any(f"ILSVRC CSV dataset {p}")
    assert header is not None
    cols = [h.strip() for h in header]
    i_id, i_pred = cols.index("ImageId"), cols.index("PredictionString")
    for number, row in csv_rows(reader, len(cols), file, problems):
        image_id = row[i_id].strip()
        tokens = row[i_pred].split()
        if not image_id:
            problems.add(file, number, "empty ImageId")
            continue
        why = id_problem(image_id)
        if why is not None:
            problems.add(file, number, f"ImageId {image_id!r}: {why}")
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
            vals = [parse_float(t) for t in tokens[k + 1:k + 5]]
            if any(v is None for v in vals) or parse_float(tokens[k]) is not None:
                problems.add(file, number, f"bad box group {' '.join(tokens[k:k + 5])!r}: "
                                           "expected 'synset x0 y0 x1 y1'")
                ok = False
                break
            box = tuple(float(v) for v in vals)  # type: ignore[arg-type]
            why = box_problem(box, None)
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
    syn_list, names, class_source = ilsvrc_classes(synsets, [file.parent, base], seen_syn,
                                                   classes, num_classes, base, problems)
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
                    stems = stem_index(img_dir, problems)
                found = stems.get(image_id)
                if found is None:
                    problems.add(file, number, f"image not found: {path}")
                else:
                    path = found
        samples.append(Sample(image_id=image_id, path=path, label=index[syn],
                              boxes=np.asarray(boxes, dtype=np.float64), size=None,
                              box_lines=((str(file), number),) * len(boxes)))
    problems.raise_if_any(f"ILSVRC CSV dataset {file}")
    return Dataset(name=name or dataset_name(base), root=img_dir, format="ilsvrc-csv",
                   split=split, samples=samples, class_names=names, synsets=syn_list,
                   class_source=class_source)
