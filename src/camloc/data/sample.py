"""The records every dataset reader returns: :class:`Sample` (one image) and :class:`Dataset`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from camloc.errors import ConfigError, DatasetError, ImageError

__all__ = ["Sample", "Dataset", "SizeFill", "EMPTY_BOXES", "CLASS_SOURCES", "box_problems"]

#: The read-only ``(0, 4)`` box array of a sample without boxes.
EMPTY_BOXES = np.zeros((0, 4), dtype=np.float64)
EMPTY_BOXES.setflags(write=False)

#: Values of :attr:`Dataset.class_source`, from the most to the least tied to real classes.
CLASS_SOURCES = ("names", "synsets", "num_classes", "max-id", "synsets-seen")


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    ``boxes`` is a read-only ``(B, 4)`` float64 array of ``x0, y0, x1, y1`` in the original image's
    pixels, exactly as the metadata gives them (``(0, 4)`` when the image has no box). ``size`` is
    ``(width, height)`` from the metadata, or ``None`` when the metadata does not give it (the
    image file is not opened; :meth:`Dataset.fill_sizes_from_headers` reads it from the image's
    header). ``size_source`` says where ``size`` came from: ``(file, line)`` of the metadata,
    or ``(image path, 0)`` once read from the image header. ``mask_paths`` / ``ignore_path``
    are OpenImages-style instance masks and ignore region (PNG), read with :func:`load_gt_mask`.

    >>> s = Sample("a.jpg", Path("/d/a.jpg"), 3, [[1, 2, 30, 40]], (64, 48))
    >>> s.boxes.dtype, s.boxes.shape, s.has_boxes
    (dtype('float64'), (1, 4), True)
    """

    image_id: str
    path: Path
    label: int | None
    boxes: np.ndarray
    size: tuple[int, int] | None
    mask_paths: tuple[Path, ...] = ()
    ignore_path: Path | None = None
    size_source: tuple[str, int] | None = None
    #: where each box is written, ``(metadata file, line)`` in the order of ``boxes``; empty
    #: where the reader does not say
    box_lines: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = EMPTY_BOXES
        else:
            boxes = np.array(boxes.reshape(-1, 4), dtype=np.float64)
            boxes.setflags(write=False)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "mask_paths", tuple(Path(p) for p in self.mask_paths))
        if self.ignore_path is not None:
            object.__setattr__(self, "ignore_path", Path(self.ignore_path))
        if self.size is not None:
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))
        if self.size_source is not None:
            object.__setattr__(self, "size_source",
                               (str(self.size_source[0]), int(self.size_source[1])))
        object.__setattr__(self, "box_lines", tuple((str(f), int(n)) for f, n in self.box_lines))

    @property
    def has_boxes(self) -> bool:
        """Whether the sample has at least one box."""
        return self.boxes.shape[0] > 0

    @property
    def has_masks(self) -> bool:
        """Whether the sample has at least one instance mask."""
        return len(self.mask_paths) > 0

    def size_mismatch(self, actual: tuple[int, int]) -> str | None:
        """Why the metadata size disagrees with ``actual`` ``(width, height)`` of the image
        (upright, as :func:`camloc.data.images.original_size` gives it), or ``None``.

        Cheap: for a loader that decodes the image anyway. A sample without a metadata size
        never mismatches.

        >>> Sample("a.jpg", "/d/a.jpg", 0, [], (500, 375)).size_mismatch((375, 500))
        'the metadata gives 500x375 but the image is 375x500 (width x height)'
        """
        if self.size is None or tuple(int(v) for v in actual) == self.size:
            return None
        w, h = (int(v) for v in actual)
        return (f"the metadata gives {self.size[0]}x{self.size[1]} but the image is {w}x{h} "
                "(width x height)")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        return (self.image_id == other.image_id and self.path == other.path
                and self.label == other.label and self.size == other.size
                and self.mask_paths == other.mask_paths and self.ignore_path == other.ignore_path
                and np.array_equal(self.boxes, other.boxes))

    def __hash__(self) -> int:
        return hash((self.image_id, self.path, self.label))


@dataclass
class Dataset:
    """An ordered list of :class:`Sample` plus the class names (index == class id).

    ``root`` is the folder relative image ids resolve against; ``format`` the reader used;
    ``split`` the split read (``None`` when the dataset has no splits or all were read).
    ``synsets`` holds WordNet ids (index == class id) for the ILSVRC formats (and where
    ``synsets=`` was given), else ``None``. ``class_source`` says how the class ids are tied to
    classes: ``"names"`` (class names from the metadata or ``classes=``), ``"synsets"`` (a
    synset list or mapping), ``"synsets-seen"`` (only the synsets present, sorted: ids depend on
    which classes occur), ``"num_classes"`` (ids given by ``num_classes=``, no names) or
    ``"max-id"`` (no names, the count is the largest id + 1).

    >>> ds = Dataset("toy", Path("/d"), "csv", None,
    ...              [Sample(f"{i}.png", Path(f"/d/{i}.png"), i % 2, [], None) for i in range(5)],
    ...              ["a", "b"])
    >>> len(ds), ds.num_classes, [s.image_id for s in ds.shard(1, 2)]
    (5, 2, ['1.png', '3.png'])
    """

    name: str
    root: Path
    format: str
    split: str | None
    samples: list[Sample]
    class_names: list[str]
    synsets: list[str] | None = None
    class_source: str = "names"

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def has_boxes(self) -> bool:
        """Whether at least one sample has a box."""
        return any(s.boxes.shape[0] > 0 for s in self.samples)

    @property
    def has_masks(self) -> bool:
        """Whether at least one sample has instance masks."""
        return any(s.mask_paths for s in self.samples)

    @property
    def has_labels(self) -> bool:
        """Whether every sample has a class label."""
        return all(s.label is not None for s in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return replace(self, samples=self.samples[index])
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, format={self.format!r}, split={self.split!r}, "
                f"root={str(self.root)!r}, samples={len(self.samples)}, "
                f"classes={self.num_classes}, boxes={self.has_boxes}, masks={self.has_masks})")

    def index(self, image_id: str) -> int:
        """Position of the sample with ``image_id`` (``KeyError`` if absent)."""
        lookup = self.__dict__.get("_index_cache")
        if lookup is None or len(lookup) != len(self.samples):
            lookup = {s.image_id: i for i, s in enumerate(self.samples)}
            self.__dict__["_index_cache"] = lookup
        if image_id not in lookup:
            raise KeyError(image_id)
        return lookup[image_id]

    def shard(self, rank: int, world_size: int) -> Dataset:
        """Samples ``rank, rank + world_size, ...``: the shards of ranks ``0..world_size-1`` hold
        every sample exactly once and differ in size by at most one."""
        if isinstance(world_size, bool) or not isinstance(world_size, (int, np.integer)) \
                or world_size < 1:
            raise ConfigError(f"world_size must be an integer >= 1, got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) \
                or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        return replace(self, samples=self.samples[int(rank)::int(world_size)])

    def subset(self, indices: Iterable[int] | np.ndarray) -> Dataset:
        """A dataset of the samples at ``indices`` (integers, in the given order), or where a
        boolean array of ``len(self)`` is true."""
        arr = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        n = len(self.samples)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ConfigError(f"a boolean subset mask needs shape ({n},), got {arr.shape}")
            arr = np.flatnonzero(arr)
        elif arr.size == 0:
            arr = arr.astype(np.int64)
        elif not np.issubdtype(arr.dtype, np.integer):
            raise ConfigError(f"subset indices must be integers, got dtype {arr.dtype}")
        arr = arr.reshape(-1)
        bad = arr[(arr < -n) | (arr >= n)]
        if bad.size:
            raise ConfigError(f"subset index {int(bad[0])} is out of range for {n} samples")
        return replace(self, samples=[self.samples[int(i)] for i in arr])

    def fill_sizes_from_headers(self) -> SizeFill:
        """Give every sample without a size its size from the image file's header (not its
        pixels; EXIF orientations 5-8 swap width and height, as :func:`load_image` does).

        For formats whose metadata has no sizes (CUB, ILSVRC CSV, CSV/JSON without
        ``width``/``height``, wsol without ``image_sizes.txt``, folders), so that boxes can be
        rescaled without decoding images. Samples are replaced in place; samples that already
        have a size are not touched. Returns ``SizeFill(opened, failed)``: the image ids whose
        header was read, and ``(image_id, reason)`` for images that could not be opened (they
        keep ``size=None``).

        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp()); Image.new("RGB", (40, 30)).save(d / "a.png")
        >>> ds = Dataset("t", d, "csv", None, [Sample("a.png", d / "a.png", 0, [], None)], ["x"])
        >>> ds.fill_sizes_from_headers(), ds[0].size
        (SizeFill(opened=['a.png'], failed=[]), (40, 30))
        """
        from camloc.data.images import read_image_size

        opened: list[str] = []
        failed: list[tuple[str, str]] = []
        samples = self.samples
        for i, s in enumerate(samples):
            if s.size is not None:
                continue
            try:
                size = read_image_size(s.path)
            except ImageError as exc:
                failed.append((s.image_id, exc.reason))
                continue
            samples[i] = replace(s, size=size, size_source=(str(s.path), 0))
            opened.append(s.image_id)
        return SizeFill(opened, failed)

    def check_sizes(self, raise_error: bool = True) -> list[tuple[str, int, str]]:
        """Compare every size the metadata gives (``image_sizes.txt``, CSV/JSON sizes, XML
        ``<size>``) with the image file's header; see :func:`camloc.data.sizes.check_sizes`."""
        from camloc.data.images import read_image_size

        problems: list[tuple[str, int, str]] = []
        outside = False
        for s in self.samples:
            from_header = s.size is None or (s.size_source is not None
                                             and s.size_source[0] == str(s.path))
            if from_header and not s.has_boxes:
                continue
            try:
                actual = read_image_size(s.path)
            except ImageError:
                continue
            if from_header:  # the metadata gives no size: its boxes must fit the image itself
                found = box_problems(s, actual)
                outside = outside or bool(found)
                problems.extend(found)
                continue
            why = s.size_mismatch(actual)
            if why is not None:
                file, line = s.size_source if s.size_source is not None else (str(s.path), 0)
                problems.append((file, line, f"{s.image_id}: {why}"))
        if problems and raise_error:
            if outside:
                raise DatasetError(
                    f"boxes in the metadata of {self.name!r} lie outside their images (the "
                    "image files' sizes; the metadata gives none); correct the boxes", problems)
            raise DatasetError(
                f"the image sizes in the metadata of {self.name!r} disagree with the images "
                "(boxes would be rescaled wrongly); correct or delete the sizes", problems)
        return problems


def box_problems(sample: Sample, size: tuple[int, int]) -> list[tuple[str, int, str]]:
    """``(metadata file, line, reason)`` for each box of ``sample`` that does not fit in an
    image of ``size`` ``(width, height)``, as the readers check boxes against a metadata size.

    >>> s = Sample("a.png", "/d/a.png", 0, [[0, 0, 5000, 5000]], None,
    ...            box_lines=[("localization.txt", 3)])
    >>> [(file, line, why.split(" (its")[0]) for file, line, why in box_problems(s, (227, 227))]
    [('localization.txt', 3, 'a.png: box (0, 0, 5000, 5000) lies outside the 227x227 image')]
    """
    from camloc.data._parse import box_problem

    out = []
    for i, box in enumerate(sample.boxes):
        why = box_problem(tuple(float(v) for v in box), size)
        if why is not None:
            file, line = sample.box_lines[i] if i < len(sample.box_lines) \
                else (str(sample.path), 0)
            out.append((file, line, f"{sample.image_id}: {why} (its size read from the image "
                                    "file)"))
    return out


class SizeFill(NamedTuple):
    """What :meth:`Dataset.fill_sizes_from_headers` did: ids whose image header was read, and
    ``(image_id, reason)`` for images that could not be opened."""

    opened: list[str]
    failed: list[tuple[str, str]]
