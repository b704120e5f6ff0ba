"""Training input: deterministic augmentation and a data order that depends only on (seed, epoch).

Every random choice is a pure function of ``(seed, epoch, sample index)``: the epoch's order is a
permutation drawn from ``(seed, epoch)``, and each sample's RandomResizedCrop and flip from
``(seed, epoch, index)``. Nothing depends on the number of DataLoader workers, on which worker
loads which sample, or on how many batches ran before, which is what lets ``--resume`` continue
mid-epoch and reach the same weights as an uninterrupted run.

Labels only: boxes and masks are never read here.

>>> batches = epoch_batches(10, batch_size=4, seed=0, epoch=0)
>>> [len(b) for b in batches], sorted(i for b in batches for i, _ in b) == list(range(10))
([4, 4, 2], True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from camloc.errors import DatasetError, ImageError

__all__ = ["CropSettings", "TrainImages", "collate", "check_batch", "epoch_batches",
           "random_resized_crop_box",
           "steps_per_epoch"]


@dataclass(frozen=True)
class CropSettings:
    """RandomResizedCrop + horizontal flip settings."""

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale: tuple[float, float], ratio: tuple[float, float]
                            ) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of a random crop covering ``scale`` of the area with aspect ``ratio``
    (log-uniform), as torchvision's RandomResizedCrop: 10 tries, then a central crop."""
    area = float(width * height)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(rng.uniform(scale[0], scale[1]))
        aspect = math.exp(float(rng.uniform(log_r[0], log_r[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x0 = int(rng.integers(0, width - w + 1))
            y0 = int(rng.integers(0, height - h + 1))
            return x0, y0, x0 + w, y0 + h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    x0, y0 = (width - w) // 2, (height - h) // 2
    return x0, y0, x0 + w, y0 + h


class TrainImages(torch.utils.data.Dataset):
    """Items are ``(index, epoch)`` pairs -> ``(image tensor (3, S, S), label)``."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int], crop: CropSettings,
                 seed: int) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = [int(v) for v in labels]
        self.crop = crop
        self.seed = int(seed)
        self._mean = np.asarray(crop.mean, dtype=np.float32)
        self._std = np.asarray(crop.std, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        from camloc.data.images import load_image

        index, epoch = item
        path = self.paths[index]
        try:
            image = load_image(path)
        except ImageError as exc:
            # reported by collate() in the main process, as a clean DatasetError
            return _Failed(exc.path, exc.reason)  # type: ignore[return-value]
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        c = self.crop
        box = random_resized_crop_box(image.width, image.height, rng, c.scale, c.ratio)
        out = image.resize((c.size, c.size), Image.Resampling.BILINEAR, box=box)
        if c.flip and rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = (np.asarray(out, dtype=np.float32) / 255.0 - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), self.labels[index]


class _Failed(tuple):
    """An image that could not be read: ``(path, reason)``."""

    def __new__(cls, path: str, reason: str) -> _Failed:
        return super().__new__(cls, (path, reason))


class _FailedBatch(list):
    """Marker batch listing the ``(path, reason)`` of images that could not be read."""


def collate(items: list[Any]) -> Any:
    """Stack ``(image, label)`` items into ``(x, y)``. Unreadable images make a marker batch that
    :func:`check_batch` turns into a :class:`DatasetError` in the main process (a clean message
    also with DataLoader workers)."""
    bad = [it for it in items if isinstance(it, _Failed)]
    if bad:
        return _FailedBatch((str(p), str(r)) for p, r in bad)
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items],
                                                            dtype=torch.long)


def check_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` from :func:`collate`, or :class:`DatasetError` naming the unreadable files."""
    if isinstance(batch, _FailedBatch):
        path, reason = batch[0]
        raise DatasetError(f"cannot read training image {path}: {reason}",
                           [(p, 0, r) for p, r in batch])
    return batch


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> list[list[tuple[int, int]]]:
    """This rank's batches of ``(index, epoch)`` for one epoch.

    The permutation of ``range(n)`` comes from ``(seed, epoch)``; it is padded (wrapping around)
    to a multiple of ``world_size`` and dealt out ``rank, rank + world, ...`` like
    DistributedSampler, so every rank gets the same number of batches. A last batch of a single
    image is dropped (BatchNorm cannot train on it) unless it is the only one.
    """
    perm = np.random.default_rng([int(seed), int(epoch), 7919]).permutation(n)
    if world_size > 1:
        total = int(math.ceil(n / world_size)) * world_size
        if total > n:
            perm = np.concatenate([perm, perm[: total - n]])
        perm = perm[rank::world_size]
    items = [(int(i), int(epoch)) for i in perm]
    batches = [items[k:k + batch_size] for k in range(0, len(items), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    """Number of batches :func:`epoch_batches` yields per rank (the same for every epoch)."""
    shard = int(math.ceil(n / world_size)) if world_size > 1 else n
    steps = int(math.ceil(shard / batch_size))
    if steps > 1 and shard % batch_size == 1:
        steps -= 1
    return steps
