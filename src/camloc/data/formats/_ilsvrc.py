"""Parts shared by the two ILSVRC readers: finding the image and annotation folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camloc.data._parse import Problems, is_image_file, list_dir, resolve


def _image_dir_candidates(p: Path, split: str) -> list[Path]:
    return [p, p / "ILSVRC" / "Data" / "CLS-LOC" / split, p / "Data" / "CLS-LOC" / split,
            p / split, p / "images"]


def _has_images(d: Path) -> bool:
    return d.is_dir() and any(is_image_file(f) for f in list_dir(d))


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
    others = [c for c in list_dir(p, problems) if c.is_dir() and has_content(c)] \
        if p.is_dir() else []
    if len(others) == 1:
        return others[0]
    problems.add(p, 0, f"cannot find the {what} folder" + (
        f" (several candidates: {', '.join(o.name for o in others)})" if others else "")
        + f"; pass {keyword}=")
    return None


def find_image_dir(p: Path, split: str, images: Any, problems: Problems) -> Path | None:
    return find_dir(p, images, _image_dir_candidates(p, split), _has_images, "image",
                    "image_root", problems)


def stem_index(d: Path, problems: Problems) -> dict[str, Path]:
    """Images of folder ``d`` by stem and by name (the first of equal stems wins)."""
    out: dict[str, Path] = {}
    for f in list_dir(d, problems):
        if is_image_file(f):
            out.setdefault(f.stem, f)
            out.setdefault(f.name, f)
    return out
