"""Ground-truth masks of OpenImages-style samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camloc.data.sample import Sample
from camloc.errors import ConfigError, DatasetError, ImageError

__all__ = ["load_gt_mask"]


def load_gt_mask(sample: Sample, size: tuple[int, int] | None = None) -> np.ndarray:
    """Ground-truth mask of an OpenImages-style sample: ``uint8 (H, W)``, 0 background,
    1 foreground (union of the instance masks), 255 ignore (ignore region minus foreground).

    As wsolevaluation's ``get_mask``: each PNG is read as grayscale, resized with nearest-neighbour
    interpolation to ``size=(width, height)`` when given (else kept at the first mask's size) and
    thresholded at 0.5. A sample without an ignore PNG has no 255 pixels.

    Raises:
        DatasetError: the sample has no instance masks.
        ImageError: a PNG cannot be read.
    """
    import cv2

    if not sample.mask_paths:
        raise DatasetError(f"{sample.image_id}: the sample has no ground-truth masks",
                           [(str(sample.path), 0, "no instance mask paths in the metadata")])
    if size is not None:
        if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
            raise ConfigError(f"size must be (width, height) with positive values, got {size!r}")
        target = (int(size[0]), int(size[1]))
    else:
        target = None

    def read(path: Path) -> np.ndarray:
        nonlocal target
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise ImageError(path, f"cannot read mask: {exc.strerror or exc}") from exc
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
        if img is None:
            raise ImageError(path, "cannot decode mask image")
        img = img.astype(np.float32)
        if target is None:
            target = (img.shape[1], img.shape[0])
        if (img.shape[1], img.shape[0]) != target:
            img = cv2.resize(img, target, interpolation=cv2.INTER_NEAREST)
        return img > 0.5

    fg = np.zeros((1, 1), dtype=bool)
    for i, mp in enumerate(sample.mask_paths):
        m = read(mp)
        fg = m if i == 0 else (fg | m)
    if sample.ignore_path is not None:
        ignore = read(sample.ignore_path) & ~fg
    else:
        ignore = np.zeros_like(fg)
    return fg.astype(np.uint8) + 255 * ignore.astype(np.uint8)
