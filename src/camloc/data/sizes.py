"""Image sizes: from the image headers where the metadata has none, and checked against the
headers where it has them.

Boxes are rescaled from original pixels to a map with the image's size, so a wrong size in the
metadata silently moves every box (a transposed ``image_sizes.txt`` gives MaxBoxAcc 0). Both
functions read only image headers (see :func:`camloc.data.images.read_image_size`), never
pixels.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from camloc.errors import DatasetError, ImageError

if TYPE_CHECKING:
    from camloc.data.sample import Dataset, Sample, SizeFill

__all__ = ["fill_sizes", "check_sizes", "box_problems"]


def fill_sizes(dataset: Dataset) -> SizeFill:
    """See :meth:`camloc.data.sample.Dataset.fill_sizes_from_headers`."""
    from camloc.data.images import read_image_size
    from camloc.data.sample import SizeFill

    opened: list[str] = []
    failed: list[tuple[str, str]] = []
    samples = dataset.samples
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


def check_sizes(dataset: Dataset, raise_error: bool = True) -> list[tuple[str, int, str]]:
    """Compare every size the metadata gives with the image file's header (upright: EXIF
    orientations 5-8 swap width and height, as decoding does).

    Where the metadata gives no size (or it was read from the header), the boxes are checked
    against the header's size instead (:func:`box_problems`): a box of 0,0,5000,5000 on a
    227 x 227 image would otherwise be scored as if it fitted.

    Returns the disagreements as ``(metadata file, line, reason)``; with ``raise_error`` (the
    default) they are raised as one :class:`DatasetError` instead. Images that cannot be opened
    are not size problems: the evaluation reports them as failed images.

    Cost: one header read per sample with a metadata size or with boxes (about as much as
    listing the files; no pixel is decoded). A loader that decodes every image anyway can compare for free with
    :meth:`camloc.data.sample.Sample.size_mismatch`.

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from camloc.data.sample import Dataset, Sample
    >>> d = pathlib.Path(tempfile.mkdtemp()); Image.new("RGB", (40, 30)).save(d / "a.png")
    >>> s = Sample("a.png", d / "a.png", 0, [], (30, 40), size_source=("image_sizes.txt", 1))
    >>> check_sizes(Dataset("t", d, "wsol", None, [s], ["x"]), raise_error=False)
    [('image_sizes.txt', 1, 'a.png: the metadata gives 30x40 but the image is 40x30 (width x height)')]
    """
    from camloc.data.images import read_image_size

    problems: list[tuple[str, int, str]] = []
    outside = False
    for s in dataset.samples:
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
                f"boxes in the metadata of {dataset.name!r} lie outside their images (the "
                "image files' sizes; the metadata gives none); correct the boxes", problems)
        raise DatasetError(
            f"the image sizes in the metadata of {dataset.name!r} disagree with the images "
            "(boxes would be rescaled wrongly); correct or delete the sizes", problems)
    return problems


def box_problems(sample: Sample, size: tuple[int, int]) -> list[tuple[str, int, str]]:
    """``(metadata file, line, reason)`` for each box of ``sample`` that does not fit in an
    image of ``size`` ``(width, height)``, as the readers check boxes against a metadata size.

    >>> from camloc.data.sample import Sample
    >>> s = Sample("a.png", "/d/a.png", 0, [[0, 0, 5000, 5000]], None,
    ...            box_lines=[("localization.txt", 3)])
    >>> box_problems(s, (227, 227))
    [('localization.txt', 3, 'a.png: box (0, 0, 5000, 5000) lies outside the 227x227 image (its size read from the image file)')]
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
