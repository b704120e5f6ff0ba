"""Dataset readers: one in-memory index of images, labels, boxes and masks for every format.

:func:`open_dataset` reads a dataset's metadata, checks it (every file and line, every image on
disk) and returns a :class:`Dataset` of :class:`Sample` records. Formats (``format=``, or
``"auto"`` to detect):

``"wsol"``
    wsolevaluation metadata (``image_ids.txt``, ``class_labels.txt``, optional ``image_sizes.txt``,
    optional ``localization.txt`` with boxes or OpenImages masks). camloc extensions, both optional:
    ``masks.txt`` (OpenImages-style mask lines next to a box ``localization.txt``) and
    ``class_names.txt`` (one class name per line, line i = class id i).
``"cub"``
    CUB-200-2011 as distributed (``images.txt``, ``image_class_labels.txt``, ...).
``"ilsvrc-xml"``
    ILSVRC validation images plus per-image PASCAL-VOC XML box files.
``"ilsvrc-csv"``
    Kaggle's ``LOC_val_solution.csv`` + ``LOC_synset_mapping.txt``.
``"csv"`` / ``"json"``
    camloc's own simple format for your data (see ``docs/datasets.md``).
``"folder"``
    one sub-folder per class, labels only.

Boxes are ``(x0, y0, x1, y1)`` float64 in the original image's pixels, exactly as the metadata
gives them (no rounding, no +1 conversion). Problems are collected over the whole dataset and raised
together as one :class:`~camloc.errors.DatasetError` whose ``problems`` are
``(file, line, reason)`` tuples; nothing is skipped silently.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "cat").mkdir(); (root / "cat" / "a.png").write_bytes(b"")
0
>>> ds = open_dataset(root)
>>> ds.format, len(ds), ds.class_names, ds[0].label
('folder', 1, ['cat'], 0)
"""

from __future__ import annotations

from camloc.data._parse import IMAGE_EXTENSIONS
from camloc.data.masks import load_gt_mask
from camloc.data.open import FORMATS, detect_format, open_dataset
from camloc.data.sample import Dataset, Sample

__all__ = [
    "Sample",
    "Dataset",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "open_dataset",
    "detect_format",
    "load_gt_mask",
]
