"""WordNet synsets as class lists: ``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca
tinca``), a bare list of synsets, or a Python list."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from camloc.data._parse import (MAX_CLASSES, Problems, class_list_source, load_class_list,
                                read_lines, resolve, same_length)
from camloc.errors import ConfigError


#: ``synsets=`` / ``--synsets`` value naming the ImageNet-1k class list.
IMAGENET = "imagenet"


def imagenet_list() -> tuple[list[str], dict[str, str], str]:
    """``(the 1000 ImageNet-1k synsets in class-id order, their class names, "imagenet")``."""
    from camloc.data.imagenet import imagenet_class_names, imagenet_synsets

    syns = imagenet_synsets()
    return syns, dict(zip(syns, imagenet_class_names())), IMAGENET


def read_synset_mapping(file: Path, problems: Problems) -> tuple[list[str], dict[str, str]]:
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
    if len(synsets) > MAX_CLASSES:
        problems.add(file, 0, f"{len(synsets):,} synsets; camloc takes at most {MAX_CLASSES:,}")
        return [], {}
    return synsets, descr


def load_synsets(value: Any, base: Path, problems: Problems
                 ) -> tuple[list[str], dict[str, str], str] | None:
    """``synsets=`` as given: a list of synsets, or a mapping file (relative to ``base`` unless
    found from the working directory). Returns ``(synsets in the given order, descriptions,
    source)``, or ``None`` after adding a problem. The word ``imagenet`` (where no file has that
    name) is the 1000 ImageNet-1k synsets in class-id order, described by their class names."""
    if isinstance(value, (str, os.PathLike)):
        file = resolve(value, base)
        if not file.is_file() and str(value).strip().lower() == IMAGENET:
            return imagenet_list()
        if not file.is_file():
            problems.add(file, 0, "synset mapping file not found (give a LOC_synset_mapping.txt-"
                                  f"style file, or '{IMAGENET}' for the 1000 ImageNet-1k classes)")
            return None
        syns, descr = read_synset_mapping(file, problems)
        if not syns:
            problems.add(file, 0, "no synsets in the file")
            return None
        return syns, descr, str(file)
    if isinstance(value, bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"synsets={value!r}: expected a list of synsets or a "
                          "LOC_synset_mapping.txt-style file")
    syns = [str(s).strip() for s in value]
    if not syns or any(not s or len(s.split()) != 1 for s in syns):
        raise ConfigError("synsets: expected a non-empty list of synsets such as 'n01440764' "
                          "(no spaces)")
    if len(set(syns)) != len(syns):
        raise ConfigError("synsets: the list has duplicates")
    if len(syns) > MAX_CLASSES:
        raise ConfigError(f"synsets: {len(syns):,} entries; camloc takes at most {MAX_CLASSES:,}")
    return syns, {}, "synsets="


def synset_classes(synsets_kw: Any, search: Sequence[Path], seen: Iterable[str],
                   problems: Problems) -> tuple[list[str], list[str], str]:
    """(sorted synsets, class names, source): from ``synsets=`` (list or file), else
    ``LOC_synset_mapping.txt`` in one of ``search``, else the sorted synsets seen (source
    ``"synsets seen"``)."""
    descr: dict[str, str] = {}
    if synsets_kw is not None:
        got = load_synsets(synsets_kw, search[0], problems)
        if got is None:
            return [], [], ""
        syns, descr, source = got
    else:
        file = next((d / "LOC_synset_mapping.txt" for d in search
                     if (d / "LOC_synset_mapping.txt").is_file()), None)
        if file is not None:
            syns, descr = read_synset_mapping(file, problems)
            source = str(file)
        else:
            syns = sorted(set(seen))
            source = "synsets seen"
    syns = sorted(set(syns))
    return syns, [descr.get(s, s) for s in syns], source


def ilsvrc_classes(synsets_kw: Any, search: Sequence[Path], seen: Iterable[str], classes: Any,
                   num_classes: int | None, base: Path, problems: Problems
                   ) -> tuple[list[str], list[str], str]:
    """``(sorted synsets, class names, class_source)`` of an ILSVRC dataset: the synsets as
    :func:`synset_classes` finds them, names overridden by ``classes=`` (same length only), and
    ``num_classes=`` checked against the synset count. Numbered by the synsets seen, the source
    is ``"synsets-seen"`` unless ``num_classes=`` confirms they are all the classes."""
    syn_list, names, source = synset_classes(synsets_kw, search, seen, problems)
    if classes is not None:
        override = load_class_list(classes, base, problems)
        if override is not None and same_length(override, class_list_source(classes, base),
                                                syn_list, f"the synset list ({source})", problems):
            names = override
    class_source = "synsets-seen" if source == "synsets seen" else "synsets"
    if num_classes is not None and num_classes != len(syn_list):
        if class_source == "synsets-seen":
            problems.add(base, 0, f"num_classes={num_classes}, but there is no "
                                  f"LOC_synset_mapping.txt and the annotations name only "
                                  f"{len(syn_list)} synsets, so the class ids cannot be tied "
                                  f"to the {num_classes} classes; pass synsets= (the mapping "
                                  "file of all classes)")
        else:
            problems.add(source, 0, f"{len(syn_list)} synsets, but num_classes={num_classes}")
    elif num_classes is not None:
        class_source = "synsets"
    return syn_list, names, class_source
