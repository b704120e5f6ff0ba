"""Do a dataset's class ids mean the same classes as a model's?

A dataset's label ``i`` is scored against the model's output ``i``. That is right only when both
number their classes the same way: an ILSVRC copy without ``LOC_synset_mapping.txt`` numbers
only the synsets it contains, and a folder of two classes numbers them 0 and 1, while an
ImageNet model's 0 and 1 are tench and goldfish. :func:`check_model_classes` refuses such a
pair before any image is read; :func:`map_to_model_classes` renumbers a dataset into the model's
classes by synset or by name, where each class can be found.

>>> from pathlib import Path
>>> from camloc.data.sample import Dataset, Sample
>>> ds = Dataset("pets", Path("/d"), "folder", None, [Sample("dog/1.jpg", "/d/dog/1.jpg", 1, [], None)],
...              ["cat", "dog"])
>>> check_model_classes(ds, 3, ["cat", "dog", "cow"])
Traceback (most recent call last):
...
camloc.errors.DatasetError: the classes of dataset 'pets' do not match the model's (1 problem)
  /d: the dataset has 2 classes, the model 3; ...
>>> [s.label for s in map_to_model_classes(ds, ["cow", "dog", "cat"])]
[1]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from camloc.data._parse import parse_count
from camloc.data.sample import Dataset
from camloc.errors import ConfigError, DatasetError

__all__ = ["check_model_classes", "fit_to_model_classes", "map_to_model_classes",
           "parse_classes", "wordnet_ids"]

_PLACEHOLDER_RE = re.compile(r"class_\d+")
#: A WordNet noun id (``n01440764``), alone or after a CUB-style number (``0001.n01440764``).
_WNID_RE = re.compile(r"\s*(?:\d+[._ -])?(n\d{8})\s*")


def wordnet_ids(names: Sequence[str] | None) -> list[str] | None:
    """The WordNet ids ``names`` are (``n01440764``, or CUB-style ``0001.n01440764``), in order;
    ``None`` unless every name is one and no two are the same.

    >>> wordnet_ids(["0001.n01440764", "n01443537"])
    ['n01440764', 'n01443537']
    >>> wordnet_ids(["n01440764", "tench"]) is None
    True
    """
    if not names:
        return None
    out = []
    for n in names:
        m = _WNID_RE.fullmatch(str(n))
        if m is None:
            return None
        out.append(m.group(1))
    return out if len(set(out)) == len(out) else None


def _norm(name: str) -> str:
    return " ".join(str(name).casefold().split())


def _first_lemma(name: str) -> str:
    return _norm(name).split(",")[0].strip()


def _names_agree(a: str, b: str) -> bool:
    """Same class name: equal ignoring case and spacing, or the same first lemma
    (``"tench"`` and ``"tench, Tinca tinca"``)."""
    return _norm(a) == _norm(b) or _first_lemma(a) == _first_lemma(b)


def _real_names(names: Sequence[str] | None) -> bool:
    """Whether ``names`` are names, not camloc's ``class_<i>`` placeholders."""
    return bool(names) and not all(_PLACEHOLDER_RE.fullmatch(str(n)) for n in names)  # type: ignore[union-attr]


def _model_lists(num_classes: int, class_names: Sequence[str] | None,
                 synsets: Sequence[str] | None) -> tuple[list[str] | None, list[str] | None]:
    names = [str(n) for n in class_names] if class_names is not None else None
    syns = [str(s) for s in synsets] if synsets is not None else None
    for what, lst in (("class_names", names), ("synsets", syns)):
        if lst is not None and len(lst) != num_classes:
            raise ConfigError(f"the model's {what} has {len(lst)} entries for num_classes="
                              f"{num_classes}; they must match")
    return names, syns


def check_model_classes(dataset: Dataset, num_classes: int,
                        class_names: Sequence[str] | None = None, *,
                        synsets: Sequence[str] | None = None) -> None:
    """Refuse a dataset whose class ids do not mean the model's classes.

    Args:
        dataset: from :func:`~camloc.data.open.open_dataset`.
        num_classes: the model's number of outputs.
        class_names: the model's class names (index == output); placeholders ``class_<i>`` count
            as no names.
        synsets: the model's WordNet ids, where known (ImageNet-1k models: the sorted 1000).

    Checked, by how the dataset ties its ids to classes (:attr:`Dataset.class_source`):
    every label must be a model output (``< num_classes``); a dataset whose classes are named
    (names, synsets, or an explicit ``num_classes=``) must have exactly the model's number of
    classes; an ILSVRC dataset numbered only by the synsets it contains must too (else pass
    ``synsets=`` with ``LOC_synset_mapping.txt``); where both sides have synsets they must be
    equal, where both have real names they must agree (case, spacing and the part after the
    first comma are ignored). A dataset numbered only by its largest id (wsol without names)
    is checked for the id range only.

    Raises:
        DatasetError: with one ``(dataset root, 0, reason)`` problem per mismatch.
        ConfigError: ``num_classes`` is not a positive integer, or the model's lists disagree
            with it.
    """
    n_model = parse_count(num_classes, "num_classes")
    names, syns = _model_lists(n_model, class_names, synsets)
    where = str(dataset.root)
    problems: list[tuple[str, int, str]] = []
    beyond = [s.image_id for s in dataset.samples if s.label is not None and s.label >= n_model]
    if beyond:
        problems.append((where, 0, f"{len(beyond)} image(s) have class ids the model does not "
                                   f"have (it has {n_model} classes, ids 0..{n_model - 1}), e.g. "
                                   f"{', '.join(beyond[:3])}"))
    source = dataset.class_source
    n_data = dataset.num_classes
    if source == "synsets-seen" and n_data != n_model:
        problems.append((where, 0, f"the class ids are positions among the {n_data} synsets "
                                   "found in the annotations (there is no LOC_synset_mapping.txt), "
                                   f"not the model's {n_model} classes; pass synsets= "
                                   "(LOC_synset_mapping.txt; CLI --synsets)"))
    elif source != "max-id" and source != "synsets-seen" and n_data != n_model:
        problems.append((where, 0, f"the dataset has {n_data} classes, the model {n_model}; "
                                   + _way_out(syns)))
    elif source != "max-id":
        if dataset.synsets is not None and syns is not None:
            diff = [i for i, (a, b) in enumerate(zip(dataset.synsets, syns)) if a != b]
            if diff:
                problems.append((where, 0, f"{len(diff)} class(es) have other synsets than the "
                                           "model's: " + ", ".join(
                                               f"class {i} is {dataset.synsets[i]} here, "
                                               f"{syns[i]} in the model" for i in diff[:3])))
        elif _real_names(dataset.class_names) and _real_names(names) and \
                dataset.class_names != dataset.synsets:
            diff = [i for i, (a, b) in enumerate(zip(dataset.class_names, names or []))
                    if not _names_agree(a, b)]
            if diff:
                problems.append((where, 0, f"{len(diff)} class name(s) differ from the model's: "
                                           + ", ".join(f"class {i} is {dataset.class_names[i]!r} "
                                                       f"here, {(names or [])[i]!r} in the model"
                                                       for i in diff[:3]) + "; " + _way_out(syns)))
    if problems:
        raise DatasetError(f"the classes of dataset {dataset.name!r} do not match the model's",
                           problems)


def _way_out(model_synsets: Sequence[str] | None) -> str:
    """What a user can pass instead, for a dataset whose classes are not the model's."""
    if model_synsets is not None:
        return ("for an ImageNet subset, name its classes by WordNet id (n01440764, or "
                "0001.n01440764 in CUB's classes.txt) or pass synsets= (CLI: --synsets "
                "LOC_synset_mapping.txt, or --synsets imagenet when the class list is all 1000 "
                "in order); else evaluate with a model trained on these classes (camloc train) "
                "or a head fitted to them (camloc probe, then --head)")
    return ("evaluate with a model trained on these classes (camloc train) or a head fitted to "
            "them (camloc probe, then --head), or renumber the dataset into the model's classes "
            "(map_to_model_classes)")


def fit_to_model_classes(dataset: Dataset, num_classes: int,
                         class_names: Sequence[str] | None = None, *,
                         synsets: Sequence[str] | None = None) -> Dataset:
    """``dataset`` numbered as the model numbers its classes, or :class:`DatasetError`.

    Where the model's WordNet ids are known (``synsets``, or class names that are WordNet ids)
    and the dataset's classes have WordNet ids too (its ``synsets``, or class names such as
    ``n01440764`` or CUB-style ``0001.n01440764``), the dataset is renumbered into the model's
    classes by synset (:func:`map_to_model_classes`), whatever its layout: an ImageNet subset
    of any size maps onto an ImageNet model. Everything else is checked as it is
    (:func:`check_model_classes`).

    >>> from pathlib import Path
    >>> from camloc.data.sample import Dataset, Sample
    >>> ds = Dataset("sub", Path("/d"), "csv", None, [Sample("a.jpg", "/d/a.jpg", 0, [], None)],
    ...              ["n03000000"])
    >>> fit_to_model_classes(ds, 3, ["a", "b", "c"], synsets=["n01000000", "n02000000",
    ...                                                        "n03000000"]).samples[0].label
    2
    """
    n_model = parse_count(num_classes, "num_classes")
    names, syns = _model_lists(n_model, class_names, synsets)
    if syns is None:
        syns = wordnet_ids(names)
    if syns is not None and dataset.class_source != "max-id":
        data_syns = dataset.synsets if dataset.synsets is not None \
            else wordnet_ids(dataset.class_names)
        if data_syns is not None and len(data_syns) == len(dataset.class_names) \
                and list(data_syns) != list(syns):
            dataset = map_to_model_classes(replace(dataset, synsets=list(data_syns)), names,
                                           synsets=syns)
        elif data_syns is not None and dataset.synsets is None:
            dataset = replace(dataset, synsets=list(data_syns))
    check_model_classes(dataset, n_model, names, synsets=syns)
    return dataset


def map_to_model_classes(dataset: Dataset, class_names: Sequence[str] | None = None, *,
                         synsets: Sequence[str] | None = None) -> Dataset:
    """The dataset renumbered into the model's classes: each dataset class is found among the
    model's by synset (when the model's ``synsets`` are given and the dataset has synsets, or
    class names that are synsets, as ImageNet's folder-per-synset layout) or else by name
    (unique match as :func:`check_model_classes` compares names). The result has the model's
    class list, so :func:`check_model_classes` accepts it.

    Raises:
        DatasetError: a class of the dataset that no model class, or several, match.
        ConfigError: neither ``class_names`` nor ``synsets`` given.
    """
    if class_names is None and synsets is None:
        raise ConfigError("map_to_model_classes needs the model's class_names or synsets")
    n_model = len(synsets if synsets is not None else class_names)  # type: ignore[arg-type]
    names, syns = _model_lists(n_model, class_names, synsets)
    target: list[int | None] = []
    problems: list[tuple[str, int, str]] = []
    by_syn = {s: i for i, s in enumerate(syns)} if syns is not None else {}
    for k, cname in enumerate(dataset.class_names):
        key = dataset.synsets[k] if dataset.synsets is not None else cname
        if key in by_syn:
            target.append(by_syn[key])
            continue
        hits = [i for i, n in enumerate(names or []) if _names_agree(cname, n)]
        exact = [i for i in hits if _norm((names or [])[i]) == _norm(cname)]
        hits = exact if len(exact) == 1 else hits
        if len(hits) == 1:
            target.append(hits[0])
            continue
        target.append(None)
        problems.append((str(dataset.root), 0,
                         f"class {k} {cname!r}: " + ("no model class has this synset or name"
                                                     " (check the spelling, or evaluate with a "
                                                     "model that has this class)"
                                                     if not hits else
                                                     f"several model classes match ({len(hits)}: "
                                                     + ", ".join(str(i) for i in hits[:5])
                                                     + "); pass synsets=")))
    used = [t for t in target if t is not None]
    if len(set(used)) != len(used):
        problems.append((str(dataset.root), 0, "two dataset classes map to the same model class"))
    if problems:
        raise DatasetError(f"cannot map the classes of dataset {dataset.name!r} onto the model's",
                           problems)
    samples = [s if s.label is None else replace(s, label=target[s.label])
               for s in dataset.samples]
    out_names = names if names is not None else list(syns or [])
    return replace(dataset, samples=samples, class_names=list(out_names),
                   synsets=list(syns) if syns is not None else None,
                   class_source="synsets" if syns is not None else "names")


def parse_classes(value: str | None, class_names: Sequence[str],
                  option: str = "--classes") -> list[int] | None:
    """``"285,281"`` or ``"Egyptian cat,tabby"`` -> class ids (names match a full name or its
    first comma-separated synonym, case-insensitively; ``;`` separates names that contain commas).
    ``option`` names the setting in error messages (``--classes`` on the command line,
    ``classes`` in the HTTP API).

    A name that several classes share (ImageNet has two 'crane's: the bird, 134, and the machine,
    517) is refused with every matching id, so the user picks one.

    >>> parse_classes("b,0", ["a", "b"])
    [1, 0]
    """
    if value is None or not value.strip():
        return None
    lookup: dict[str, list[int]] = {}
    for i, name in enumerate(class_names):
        for alias in {name.lower().strip(), name.split(",")[0].strip().lower()}:
            if alias and i not in lookup.setdefault(alias, []):
                lookup[alias].append(i)
    ids = []
    for item in value.split(";" if ";" in value else ","):
        item = item.strip()
        if not item:
            continue
        if item.isdigit():
            idx = int(item)
            if idx >= len(class_names):
                raise ConfigError(f"{option}: id {idx} is out of range (the model has "
                                  f"{len(class_names)} classes, ids 0..{len(class_names) - 1})")
            ids.append(idx)
            continue
        found = lookup.get(item.lower(), [])
        if not found:
            raise ConfigError(f"{option}: unknown class {item!r} (give ids or names)")
        if len(found) > 1:
            which = ", ".join(f"{i} ({class_names[i]})" for i in found)
            raise ConfigError(f"{option}: {item!r} names {len(found)} classes: {which}; give the "
                              f"id of the one you mean")
        ids.append(found[0])
    if not ids:
        raise ConfigError(f"{option} {value!r}: no class ids or names in it")
    return ids
