"""Coarse categories of the 1000 ImageNet-1k classes, derived from the WordNet noun hierarchy.

ImageNet classes are WordNet 3.0 noun synsets (``n02084071`` is the noun at byte offset
02084071 of WordNet 3.0's ``data.noun``). A class belongs to a coarse group when one of the group's
root synsets is among its ancestors through hypernym (``@``) and instance-hypernym (``@i``) links;
groups are tried in the order of :data:`GROUPS`, so ``dog`` and ``bird`` are taken before
``other_animal``. Classes under no root are left out (``None``).

The assignment shipped in :mod:`camloc.probe._imagenet_groups_data` was computed once by
:func:`derive_groups` from Princeton WordNet 3.0 as packaged by Debian (package ``wordnet-base``
1:3.0-37, file ``/usr/share/wordnet/data.noun``), since no copy of the hierarchy is installed with
camloc's dependencies (timm ships only lemmas and glosses). Regenerate it with::

    apt-get install wordnet-base
    python -m camloc.probe.imagenet_groups /usr/share/wordnet/data.noun > \\
        src/camloc/probe/_imagenet_groups_data.py

>>> names, groups = imagenet_groups()
>>> names
['dog', 'bird', 'other_animal', 'vehicle', 'food', 'clothing', 'structure']
>>> groups[207], groups[1], groups[817]  # golden retriever, goldfish, sports car
('dog', 'other_animal', 'vehicle')
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from camloc.errors import ConfigError

__all__ = ["GROUPS", "imagenet_groups", "derive_groups", "read_hypernyms"]

#: (group name, WordNet 3.0 root synsets), in priority order.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dog", ("n02084071",)),  # dog, domestic dog, Canis familiaris
    ("bird", ("n01503061",)),  # bird
    ("other_animal", ("n00015388",)),  # animal, animate being, beast, brute, creature, fauna
    ("vehicle", ("n03100490",)),  # conveyance, transport (vehicles, craft, public transport)
    ("food", ("n00021265", "n07555863", "n13134947", "n07707451")),  # food/nutrient, solid food,
    #                                                                   fruit, vegetable
    ("clothing", ("n03051540",)),  # clothing, article of clothing, wear
    ("structure", ("n04341686",)),  # structure, construction (buildings, bridges, ...)
)


def read_hypernyms(data_noun: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Parse WordNet's ``data.noun``: ``{"n<offset>": [hypernym ids]}`` (``@`` and ``@i`` links).

    Line format (``wndb(5WN)``): ``offset lex_filenum ss_type w_cnt (word lex_id)*w_cnt p_cnt
    (pointer_symbol offset pos source/target)*p_cnt ... | gloss``; ``w_cnt`` is hexadecimal.
    """
    path = Path(data_noun)
    if not path.is_file():
        raise ConfigError(f"{path}: WordNet data.noun not found (apt-get install wordnet-base)")
    parents: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if line.startswith("  ") or not line.strip():
                continue  # licence header
            f = line.split(" ")
            try:
                words = int(f[3], 16)
                p = 4 + 2 * words
                count = int(f[p])
                p += 1
                ps = []
                for _ in range(count):
                    sym, off, pos = f[p], f[p + 1], f[p + 2]
                    p += 4
                    if sym in ("@", "@i") and pos == "n":
                        ps.append("n" + off)
            except (IndexError, ValueError) as exc:
                raise ConfigError(f"{path}:{number}: not a WordNet data line ({exc})") from None
            parents["n" + f[0]] = ps
    return parents


def derive_groups(data_noun: str | os.PathLike[str], synsets: Sequence[str] | None = None,
                  groups: Sequence[tuple[str, Sequence[str]]] = GROUPS) -> list[str | None]:
    """The group of each synset (``None`` when under no group's root), by WordNet ancestry."""
    parents = read_hypernyms(data_noun)
    if synsets is None:
        from camloc.data.imagenet import imagenet_synsets

        synsets = imagenet_synsets()
    syns = list(synsets)
    out: list[str | None] = []
    for s in syns:
        if s not in parents:
            raise ConfigError(f"synset {s} is not in {data_noun} (expected WordNet 3.0)")
        seen: set[str] = set()
        stack = [s]
        while stack:
            x = stack.pop()
            if x not in seen:
                seen.add(x)
                stack.extend(parents.get(x, []))
        out.append(next((name for name, roots in groups if any(r in seen for r in roots)), None))
    return out


def imagenet_groups() -> tuple[list[str], list[str | None]]:
    """``(group names, group of each ImageNet class id 0..999 or None)`` from the shipped table."""
    from camloc.probe._imagenet_groups_data import TABLE

    names = [name for name, _ in GROUPS]
    groups: list[str | None] = []
    for i, line in enumerate(TABLE.strip().splitlines()):
        cid, _syn, group = line.split("\t")[:3]
        if int(cid) != i:  # pragma: no cover - the shipped table is in order
            raise ConfigError(f"camloc.probe._imagenet_groups_data: line {i + 1} has class {cid}")
        groups.append(None if group == "-" else group)
    return names, groups


def _write_table(data_noun: str, stream: object = sys.stdout) -> None:
    """Print the data module (see the module docstring)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    from camloc.data.imagenet import imagenet_synsets

    syns = imagenet_synsets()
    groups = derive_groups(data_noun, syns)
    import textwrap

    roots = textwrap.fill("Group roots (priority order): " + "; ".join(
        f"{n}: {', '.join(r)}" for n, r in GROUPS) + ".", 96)
    print('"""Generated by ``python -m camloc.probe.imagenet_groups DATA_NOUN``: do not edit.\n\n'
          "Source: Princeton WordNet 3.0 noun hierarchy (Debian package wordnet-base 1:3.0-37,\n"
          "/usr/share/wordnet/data.noun); WordNet 3.0 Copyright 2006 by Princeton University,\n"
          f"distributed under the WordNet 3.0 licence.\n{roots}\n\n"
          "Columns: class id, synset, group ('-': none), first lemma.\n"
          '"""\n\nTABLE = """\\', file=stream)  # type: ignore[call-overload]
    for i, (s, g) in enumerate(zip(syns, groups)):
        lemma = info.index_to_description(i).split(",")[0].strip().replace("\t", " ")
        print(f"{i}\t{s}\t{g or '-'}\t{lemma}", file=stream)  # type: ignore[call-overload]
    print('"""', file=stream)  # type: ignore[call-overload]


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 2:
        sys.exit("usage: python -m camloc.probe.imagenet_groups /usr/share/wordnet/data.noun")
    _write_table(sys.argv[1])
