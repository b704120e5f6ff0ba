"""Image sizes: from the image headers where the metadata has none, and checked against the
headers where it has them.

Boxes are rescaled from original pixels to a map with the image's size, so a wrong size in the
metadata silently moves every box (a transposed ``image_sizes.txt`` gives MaxBoxAcc 0). Both
functions read only image headers (see :func:`camloc.data.images.read_image_size`), never
pixels.
"""

from __future__ import annotations

from camloc.data.sample import Dataset, SizeFill, box_problems

__all__ = ["fill_sizes", "check_sizes", "box_problems"]


def fill_sizes(dataset: Dataset) -> SizeFill:
    """See :meth:`camloc.data.sample.Dataset.fill_sizes_from_headers`."""
    return dataset.fill_sizes_from_headers()


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
    return dataset.check_sizes(raise_error=raise_error)
