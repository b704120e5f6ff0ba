"""Batches of a labelled dataset as ``evaluate`` and ``compare`` score them.

One loop serves both: each image is decoded and preprocessed once (in DataLoader worker processes
when ``workers > 0``, so decoding overlaps the forward pass), an image that cannot be read or whose
decoded size disagrees with the metadata becomes a failure record instead of a batch row, the
ground-truth boxes are rescaled to the ``EVAL_SIZE x EVAL_SIZE`` evaluation grid with
wsolevaluation's integer truncation, and the ground-truth masks are loaded at that size.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> from camloc.data.sample import Dataset, Sample
>>> from camloc.models.spec import Preprocess
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> Image.new("RGB", (40, 20)).save(d / "a.png")
>>> ds = Dataset("t", d, "csv", None, [Sample("a.png", d / "a.png", 0, [[0, 0, 20, 10]], (40, 20)),
...                                    Sample("b.png", d / "b.png", 1, [[0, 0, 1, 1]], None)], ["x", "y"])
>>> failed = []
>>> [(b.image_ids, tuple(b.x.shape), b.boxes[0].tolist()) for b in eval_batches(
...     ds.samples, Preprocess(input_size=(32, 32)), failed=failed, boxes=True)]
[(['a.png'], (1, 3, 32, 32), [[0, 0, 112, 112]])]
>>> [f["image_id"] for f in failed]
['b.png']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from camloc.data.images import load_image, to_tensor
from camloc.errors import ConfigError, ImageError

__all__ = ["EVAL_SIZE", "EvalBatch", "eval_batches", "labelled_samples"]

#: side of the square grid the WSOL metrics are taken on (wsolevaluation's 224)
EVAL_SIZE = 224


@dataclass
class EvalBatch:
    """The readable images of one batch: their positions in the sample list, the samples, the
    preprocessed input ``x`` (``(B, 3, H, W)``, on the requested device and layout), the labels,
    the decoded ``(width, height)`` sizes, the GT boxes on the evaluation grid (``None`` when not
    asked) and the GT masks (``(B, EVAL_SIZE, EVAL_SIZE)``, ``None`` when not asked)."""

    index: list[int]
    samples: list[Any]
    x: torch.Tensor
    labels: torch.Tensor
    sizes: list[tuple[int, int]]
    boxes: list[np.ndarray] | None = None
    masks: np.ndarray | None = None

    @property
    def image_ids(self) -> list[str]:
        return [s.image_id for s in self.samples]

    def __len__(self) -> int:
        return len(self.index)


def labelled_samples(dataset: Any, why: str) -> list[Any]:
    """``dataset``'s samples, refused with :class:`~camloc.errors.ConfigError` when there are none
    or one has no class label (``why`` says what the label is needed for)."""
    samples = list(dataset.samples)
    if not samples:
        raise ConfigError(f"dataset {getattr(dataset, 'name', '')!r} has no samples")
    if any(s.label is None for s in samples):
        raise ConfigError(why)
    return samples


class _Decode(torch.utils.data.Dataset):
    """Decodes and preprocesses samples (in DataLoader workers); failures come back as records.

    An image whose decoded size disagrees with the metadata's size is a failure (its boxes would
    be rescaled wrongly), never scored silently."""

    def __init__(self, samples: Sequence[Any], pre: Any) -> None:
        self.samples, self.pre = samples, pre

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, tuple[int, int], str]:
        s = self.samples[i]
        try:
            img = load_image(s.path)
        except ImageError as exc:
            return i, None, (0, 0), exc.reason
        why = s.size_mismatch(img.size)
        if why is not None:
            where = f"{s.size_source[0]}:{s.size_source[1]}: " if s.size_source else ""
            return i, None, img.size, f"{where}{why}"
        try:
            x, _ = to_tensor(img, self.pre)
        except ImageError as exc:  # too large once resized
            return i, None, img.size, exc.reason
        return i, x, img.size, ""


def _as_list(items: list[Any]) -> list[Any]:
    return items


def eval_batches(samples: Sequence[Any], pre: Any, *, batch_size: int = 32, workers: int = 0,
                 failed: list[dict[str, str]], boxes: bool = False, masks: bool = False,
                 device: torch.device | str | None = None, channels_last: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> Iterator[EvalBatch]:
    """Yield the readable images of ``samples`` batch by batch (see the module docstring).

    Args:
        pre: the model's preprocessing (evaluate and compare stretch: ``fit="stretch"``).
        failed: receives ``{"path", "image_id", "error"}`` for each image left out.
        boxes, masks: rescale the GT boxes / load the GT masks at ``EVAL_SIZE``.
        device, channels_last: where and in which memory layout ``x`` is handed over.
        progress: called with ``(done, total)`` after each batch has been consumed (failures
            count as done).
    """
    from camloc.metrics import rescale_gt_boxes

    load_gt_mask = None
    if masks:
        from camloc.data.masks import load_gt_mask

    loader = torch.utils.data.DataLoader(_Decode(samples, pre), batch_size=batch_size,
                                         shuffle=False, num_workers=workers, collate_fn=_as_list)
    # (torch runs each worker with one thread; nothing else is set in the forked workers: calling
    # into OpenCV's thread pool in a child forked from a process that has used it can deadlock)
    done = 0
    for chunk in loader:
        good = []
        for i, x, size, err in chunk:
            if x is None:
                failed.append({"path": str(samples[i].path), "image_id": samples[i].image_id,
                               "error": err})
            else:
                good.append((i, x, size))
        done += len(chunk)
        if good:
            index = [i for i, _, _ in good]
            picked = [samples[i] for i in index]
            x = torch.stack([t for _, t, _ in good])
            if device is not None:
                x = x.to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            sizes = [tuple(size) for _, _, size in good]
            batch = EvalBatch(
                index, picked, x, torch.tensor([s.label for s in picked], dtype=torch.long), sizes,
                boxes=[rescale_gt_boxes(s.boxes, s.size if s.size is not None else size,
                                        (EVAL_SIZE, EVAL_SIZE)) for s, size in zip(picked, sizes)]
                if boxes else None,
                masks=np.stack([load_gt_mask(s, (EVAL_SIZE, EVAL_SIZE)) for s in picked])
                if load_gt_mask is not None else None)
            yield batch
        if progress:
            progress(done, len(samples))
