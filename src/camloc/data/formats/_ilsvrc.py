"""Parts shared by the two ILSVRC readers: synset mappings and finding the image and
annotation folders."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from camloc.data._parse import Problems, is_image_file, read_lines, resolve


_SYNSET_RE = re.compile(r"^n\d{8}$")


def _read_synset_mapping(file: Path, problems: Problems) -> tuple[list[str], dict[str, str]]:
    """``LOC_synset_mapping.txt`` lines ``n01440764 tench, Tinca tinca`` (or a bare synset list)."""
    synsets: list[str] = []
    descr: dict[str, str] = {}
    for number, text in read_lines(file, problems):
        parts = text.split(None, 1)
        syn = parts[0]
        if syn in descr:
            problems.add(file, number, f"duplicate synset {syn}")
            continue
        synsets.append(syn)
        descr[syn] = parts[1].strip() if len(parts) > 1 else syn
    return synsets, descr


def synset_classes(synsets_kw: Any, search: Sequence[Path], seen: Iterable[str],
                    problems: Problems) -> tuple[list[str], list[str], str]:
    """(sorted synsets, class names, source): from ``synsets=`` (list or file), else
    ``LOC_synset_mapping.txt`` in one of ``search``, else the sorted synsets seen."""
    descr: dict[str, str] = {}
    if synsets_kw is not None and not isinstance(synsets_kw, (str, os.PathLike)):
        syns = [str(s) for s in synsets_kw]
        source = "synsets="
    else:
        file = None
        if synsets_kw is not None:
            file = resolve(synsets_kw, search[0])
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
        return d.is_dir() and any(is_image_file(f) for f in d.iterdir())
    except OSError:
        return False


def find_dir(p: Path, explicit: Any, candidates: list[Path], has_content: Any, what: str,
              keyword: str, problems: Problems) -> Path | None:
    """The folder holding ``what``: ``explicit`` if given, else the first candidate that
    ``has_content``, else the only such subfolder of ``p``; otherwise a problem naming ``keyword``."""
    if explicit is not None:
        d = resolve(explicit, p)
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


def find_image_dir(p: Path, split: str, images: Any, problems: Problems) -> Path | None:
    return find_dir(p, images, _image_dir_candidates(p, split), _has_images, "image", "images",
                     problems)


def stem_index(d: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in sorted(d.iterdir()):
        if is_image_file(f):
            out.setdefault(f.stem, f)
            out.setdefault(f.name, f)
    return out
