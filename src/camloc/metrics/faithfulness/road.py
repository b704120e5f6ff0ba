"""ROAD: Remove And Debias (Rong et al., ICML 2022), MoRF and LeRF with noisy linear imputation.

For each removal percentage ``p`` (default 10, 20, ..., 90) and image with ``P`` pixels,
``n = floor(P * p / 100)`` pixels are removed: the ``n`` most relevant (**MoRF**, the head of
:func:`~camloc.metrics.faithfulness.perturb.relevance_order`) or the ``n`` least relevant (**LeRF**,
its tail), and replaced by :func:`~camloc.metrics.faithfulness.perturb.noisy_linear_impute` (the
mean of the 8 neighbours, solved jointly, plus Gaussian noise of standard deviation ``noise``).
The model then scores each imputed image. Reported per ``p`` and order: the mean target-class
score (softmax probability by default), the **accuracy** (percent of images whose arg-max class is
the target class: the paper's figure when the targets are the labels), and the mean score change
``O - Y``. A faithful map makes MoRF scores fall fast and LeRF scores stay high; ``combined`` is
pytorch-grad-cam's ``ROADCombined``: the mean over ``p`` and images of ``(O_LeRF - O_MoRF) / 2``
(higher is better).

Noise: ``noise_space="image"`` (default, the paper: imputation on the image in ``[0, 1]``, noise
0.01 there) adds ``noise / std[c]`` to channel ``c`` of the normalised input (the imputation itself is
the same in both spaces); ``"input"`` adds ``noise`` in input units, as pytorch-grad-cam and Quantus
do. The noise of one image, order and ``p`` comes from ``np.random.default_rng([seed, key, order,
p])`` where ``key`` derives from the image id when ``image_ids`` are passed (so shards merged give
the same values as one pass) and from the image's position in the accumulator otherwise.

Cost per image: one sparse solve and one perturbed input per ``p`` and order (``2 x 9`` by default),
the inputs batched ``batch_size`` at a time.

>>> import torch
>>> from torch import nn
>>> from camloc.metrics.faithfulness import ROADAccumulator
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
>>> acc = ROADAccumulator(percentiles=(20, 50, 80))
>>> _ = acc.update(model, torch.randn(2, 3, 8, 8), torch.rand(2, 8, 8), [0, 3], image_ids=["a", "b"])
>>> acc.compute()["percentiles"]
[20.0, 50.0, 80.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camloc.errors import ConfigError, MetricError
from camloc.metrics.faithfulness._base import (IMAGENET_MEAN, IMAGENET_STD, RecordAccumulator, Scorer,
                                               check_inputs, check_pixel_stats, class_ids_of, exact_mean,
                                               model_context, resolve_forward, stable_key)
from camloc.metrics.faithfulness.perturb import noisy_linear_impute, relevance_order, removal_count

__all__ = ["ROADAccumulator", "DEFAULT_PERCENTILES"]

ORDERS = ("morf", "lerf")
NOISE_SPACES = ("image", "input")
DEFAULT_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


class ROADAccumulator(RecordAccumulator):
    """Streaming ROAD MoRF / LeRF (see the module docstring).

    Parameters: ``percentiles`` (percent of pixels removed, each in (0, 100)); ``orders``
    (``"morf"``, ``"lerf"`` or both); ``noise`` (standard deviation, 0 for none) and
    ``noise_space`` (``"image"`` or ``"input"``); ``mean`` / ``std`` of the input normalisation
    (``std`` scales image-space noise); ``seed``; ``score``; ``batch_size``.
    Per image it keeps ``score`` (Y) and, per order, ``{order}_score`` and ``{order}_correct``
    (one value per percentile).
    """

    kind = "road"

    def __init__(self, percentiles: Sequence[float] = DEFAULT_PERCENTILES,
                 orders: Sequence[str] = ORDERS, noise: float = 0.01, noise_space: str = "image",
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 seed: int = 0, score: str = "softmax", batch_size: int = 64) -> None:
        try:
            ps = tuple(float(p) for p in percentiles)
        except (TypeError, ValueError):
            raise ConfigError(f"percentiles={percentiles!r}: expected numbers in (0, 100)") from None
        if not ps or any(not (0.0 < p < 100.0) for p in ps) or len(set(ps)) != len(ps):
            raise ConfigError(f"percentiles={percentiles!r}: expected distinct numbers in (0, 100) "
                              "(percent of pixels removed)")
        self.percentiles = ps
        if isinstance(orders, str) or not orders or any(o not in ORDERS for o in orders) or \
                len(set(orders)) != len(orders):
            raise ConfigError(f"orders={orders!r}: expected a non-empty subset of {ORDERS}")
        self.orders = tuple(o for o in ORDERS if o in orders)
        try:
            self.noise = float(noise)
        except (TypeError, ValueError):
            raise ConfigError(f"noise={noise!r}: expected a number >= 0") from None
        if not (self.noise >= 0 and np.isfinite(self.noise)):
            raise ConfigError(f"noise={noise!r}: expected a number >= 0")
        if noise_space not in NOISE_SPACES:
            raise ConfigError(f"noise_space={noise_space!r}: expected one of {NOISE_SPACES}")
        self.noise_space = noise_space
        self.mean, self.std = check_pixel_stats(mean, std)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed={seed!r}: expected a non-negative integer")
        self.seed = int(seed)
        super().__init__(score, batch_size)

    def settings(self) -> dict[str, Any]:
        return {"percentiles": self.percentiles, "orders": self.orders, "noise": self.noise,
                "noise_space": self.noise_space, "mean": self.mean, "std": self.std,
                "seed": self.seed, "score": self.score}

    def field_shapes(self) -> dict[str, tuple[int, ...]]:
        k = (len(self.percentiles),)
        out: dict[str, tuple[int, ...]] = {"score": ()}
        for o in self.orders:
            out[f"{o}_score"] = k
            out[f"{o}_correct"] = k
        return out

    def _noise_std(self, channels: int) -> np.ndarray:
        if self.noise_space == "input":
            return np.full(channels, self.noise)
        if len(self.std) != channels:
            raise MetricError(f"std has {len(self.std)} channels but the inputs have {channels}")
        return self.noise / np.asarray(self.std, np.float64)

    def update(self, forward: Any, x: torch.Tensor, maps: Any, class_ids: Any, *,
               logits: torch.Tensor | None = None,
               image_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Score a batch (arguments as :meth:`AverageDropAccumulator.update
        <camloc.metrics.faithfulness.AverageDropAccumulator.update>`; maps may hold any finite
        values, only their order matters). Returns this batch's per-image ``score`` and, per
        order, ``{order}_score`` / ``{order}_correct`` ``(N, len(percentiles))``."""
        x, m, target, names = check_inputs(x, maps, class_ids, image_ids, unit_maps=False)
        n, c, h, w = x.shape
        npix = h * w
        counts = [removal_count(npix, p) for p in self.percentiles]
        order = relevance_order(m).cpu().numpy()
        images = x.detach().to("cpu", torch.float64).numpy()
        sigma = self._noise_std(c)
        keys = [stable_key(s) if s is not None else self.count + i for i, s in enumerate(names)]
        jobs = [(i, oi, pi) for i in range(n) for oi in range(len(self.orders))
                for pi in range(len(self.percentiles))]
        if logits is None:  # the images themselves share the batches (order index -1)
            jobs += [(i, -1, -1) for i in range(n)]

        def perturbed(i: int, oi: int, pi: int) -> np.ndarray:
            if oi < 0:
                return images[i]
            k = counts[pi]
            removed = np.zeros(npix, bool)
            if k:
                removed[order[i, :k] if self.orders[oi] == "morf" else order[i, npix - k:]] = True
            rng = np.random.default_rng([self.seed, keys[i], ORDERS.index(self.orders[oi]),
                                         int(round(self.percentiles[pi] * 1000))])
            return noisy_linear_impute(images[i], removed.reshape(h, w), sigma, rng)

        def make(a: int, b: int) -> torch.Tensor:
            batch = np.stack([perturbed(*jobs[t]) for t in range(a, b)])
            return torch.from_numpy(batch).to(device=x.device, dtype=x.dtype)

        fn, module = resolve_forward(forward)
        scorer = Scorer(fn, self.score, self.batch_size, target, n)
        job_img = torch.tensor([j[0] for j in jobs], dtype=torch.long)
        perturbations = n * len(self.orders) * len(self.percentiles)
        with model_context(module):
            s, pred = scorer.run(make, job_img)
        y = s[perturbations:] if logits is None else scorer.from_logits(logits)[0]
        s, pred = s[:perturbations], pred[:perturbations]
        shape = (n, len(self.orders), len(self.percentiles))
        s = s.reshape(shape)
        cls = class_ids_of(target, n)  # a score function's target has no class to be correct about
        correct = (np.full(shape, np.nan) if cls is None
                   else (pred.reshape(shape) == cls[:, None, None]).astype(np.float64))
        rec: dict[str, np.ndarray] = {"score": y}
        for oi, o in enumerate(self.orders):
            rec[f"{o}_score"] = s[:, oi]
            rec[f"{o}_correct"] = correct[:, oi]
        self._add(names, **rec)
        return rec

    def compute(self) -> dict[str, Any]:
        """Per order: ``score`` / ``accuracy`` (percent) / ``score_change`` per percentile and their
        means over percentiles; ``combined`` when both orders ran; ``count``; the settings."""
        self._require()
        y = self.column("score")
        out: dict[str, Any] = {"count": self.count, **self.settings(),
                               "percentiles": list(self.percentiles)}
        for o in self.orders:
            sc, ok = self.column(f"{o}_score"), self.column(f"{o}_correct")
            score = [exact_mean(sc[:, k]) for k in range(sc.shape[1])]
            acc = [100.0 * float(ok[:, k].sum()) / ok.shape[0] for k in range(ok.shape[1])]
            change = [exact_mean(sc[:, k] - y) for k in range(sc.shape[1])]
            out[o] = {"score": score, "accuracy": acc, "score_change": change,
                      "mean_score": exact_mean(sc), "mean_accuracy": float(np.mean(acc)),
                      "mean_score_change": exact_mean(sc - y[:, None])}
        if len(self.orders) == 2:
            out["combined"] = exact_mean((self.column("lerf_score") - self.column("morf_score")) / 2)
        return out
