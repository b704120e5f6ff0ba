"""Average Drop and Increase in Confidence (Chattopadhyay et al., WACV 2018, "Grad-CAM++").

For image ``i`` with target class ``c`` and explanation map ``E_i`` in ``[0, 1]`` at input
resolution, ``Y_i`` is the model's score of ``c`` on the image and ``O_i`` its score on the
*explanation image* ``E_i * I_i`` (the map multiplied into the image, pixel by pixel, every channel):

* **Average Drop** ``= 100 / N * sum_i max(0, Y_i - O_i) / Y_i`` (lower is better);
* **Increase in Confidence** ``= 100 / N * sum_i 1[O_i > Y_i]`` (higher is better).

Scores are softmax probabilities by default (``score="softmax"``; the authors' VGG-16 code reads its
softmax output). ``mask_space="image"`` (default, the paper) multiplies the image in ``[0, 1]``,
``I = x * std + mean``, so removed pixels turn black, and renormalises; ``mask_space="input"``
multiplies the normalised tensor ``x`` itself (removed pixels turn into the mean colour), as torchcam
and pytorch-grad-cam do. Cost: two inputs per image (the image and its explanation image, sharing
forward batches of ``batch_size``), one when the caller passes the logits it already has.

>>> import torch
>>> from torch import nn
>>> from camloc.metrics.faithfulness import AverageDropAccumulator
>>> _ = torch.manual_seed(0)
>>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
>>> acc = AverageDropAccumulator()
>>> _ = acc.update(model, torch.randn(2, 3, 16, 16), torch.ones(2, 16, 16), [0, 1])
>>> acc.compute()["count"]
2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camloc.errors import ConfigError, MetricError
from camloc.metrics.faithfulness._base import (IMAGENET_MEAN, IMAGENET_STD, RecordAccumulator,
                                               Scorer, check_inputs, check_pixel_stats, exact_mean,
                                               model_context, resolve_forward)

__all__ = ["AverageDropAccumulator"]


MASK_SPACES = ("image", "input")


class AverageDropAccumulator(RecordAccumulator):
    """Streaming Average Drop / Increase in Confidence (see the module docstring).

    Parameters: ``score`` (``"softmax"`` or ``"logit"``; the drop is relative to ``Y``, so ``Y``
    must be positive); ``mask_space`` (``"image"`` or ``"input"``); ``mean`` / ``std`` of the
    model's input normalisation ``x = (image - mean) / std`` (used by ``mask_space="image"``);
    ``batch_size``: most inputs per forward call.
    Per image it keeps ``score`` (Y) and ``masked_score`` (O).
    """

    kind = "average_drop"

    def __init__(self, score: str = "softmax", mask_space: str = "image",
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 batch_size: int = 64) -> None:
        if mask_space not in MASK_SPACES:
            raise ConfigError(f"mask_space={mask_space!r}: expected one of {MASK_SPACES}")
        self.mask_space = mask_space
        self.mean, self.std = check_pixel_stats(mean, std)
        super().__init__(score, batch_size)

    def settings(self) -> dict[str, Any]:
        return {"score": self.score, "mask_space": self.mask_space, "mean": self.mean,
                "std": self.std}

    def field_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"score": (), "masked_score": ()}

    def explanation_images(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """The model inputs of ``E * I`` for inputs ``x`` (N, C, H, W) and maps (N, H, W)."""
        e = maps[:, None].to(x.dtype)
        if self.mask_space == "input":
            return x * e
        if len(self.mean) != x.shape[1]:
            raise MetricError(f"mean/std have {len(self.mean)} channels but the inputs have "
                              f"{x.shape[1]}")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((x * std + mean) * e - mean) / std

    def update(self, forward: Any, x: torch.Tensor, maps: Any, class_ids: Any, *,
               logits: torch.Tensor | None = None,
               image_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Score a batch: ``forward`` (a Module, CamModel or function ``x -> logits``), ``x``
        (N, C, H, W) normalised inputs, ``maps`` (N, H, W) in [0, 1] at input resolution,
        ``class_ids`` (N,) target classes, or a :class:`~camloc.targets.Target` or callable on
        the logits with one score per image (see :mod:`camloc.targets`); ``logits``: the model's
        logits on ``x`` if already computed (saves a forward). Returns this batch's per-image ``drop`` (percent),
        ``increase`` (0/1), ``score`` and ``masked_score``.
        """
        x, m, target, names = check_inputs(x, maps, class_ids, image_ids, unit_maps=True)
        fn, module = resolve_forward(forward)
        n = x.shape[0]
        scorer = Scorer(fn, self.score, self.batch_size, target, n)
        rows = torch.arange(n)
        with model_context(module):
            if logits is None:  # the images and the explanation images share batches
                def make(i: int, j: int) -> torch.Tensor:
                    parts = [x[i:min(j, n)]] if i < n else []
                    if j > n:
                        parts.append(self.explanation_images(x[max(i, n) - n:j - n],
                                                             m[max(i, n) - n:j - n]))
                    return torch.cat(parts)

                s, _ = scorer.run(make, torch.cat([rows, rows]))
                y, o = s[:n], s[n:]
            else:
                y, _ = scorer.from_logits(logits)
                o, _ = scorer.run(lambda i, j: self.explanation_images(x[i:j], m[i:j]), rows)
        if not (y > 0).all():
            bad = [names[k] if names[k] is not None else str(self.count + k)
                   for k in np.flatnonzero(~(y > 0))[:5]]
            raise MetricError(f"Average Drop divides by the original score, which is not positive "
                              f"for image(s) {bad}; use score='softmax'")
        self._add(names, score=y, masked_score=o)
        return {"drop": _drop(y, o), "increase": (o > y).astype(np.float64), "score": y,
                "masked_score": o}

    def compute(self) -> dict[str, Any]:
        """``average_drop`` and ``increase_in_confidence`` in percent, ``count``, the settings."""
        self._require()
        y, o = self.column("score"), self.column("masked_score")
        return {"average_drop": exact_mean(_drop(y, o)),
                "increase_in_confidence": 100.0 * float(np.count_nonzero(o > y)) / y.size,
                "count": self.count, **self.settings()}


def _drop(y: np.ndarray, o: np.ndarray) -> np.ndarray:
    return 100.0 * np.maximum(0.0, y - o) / y
