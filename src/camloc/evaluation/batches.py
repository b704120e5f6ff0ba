"""Batches of a labelled dataset as ``evaluate`` and ``compare`` score them.

One loop serves both, over the one batch runner (:func:`camloc.data.batches.loader_batches`): each
image is decoded and preprocessed once (in DataLoader worker processes when ``workers > 0``, so
decoding overlaps the forward pass), an image that cannot be read or whose
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

from camloc.data.batches import loader_batches, split_failures, stack_inputs
from camloc.errors import ConfigError

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

    done = 0
    for chunk in loader_batches(samples, pre, batch_size=batch_size, workers=workers,
                                check_size=True):
        good = split_failures(chunk, samples, failed)
        done += len(chunk)
        if good:
            index = [i for i, _, _, _ in good]
            picked = [samples[i] for i in index]
            x = stack_inputs([t for _, t, _, _ in good], device, channels_last)
            sizes = [tuple(size) for _, _, size, _ in good]
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
