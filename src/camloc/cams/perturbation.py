"""Perturbation methods: channel weights from the scores of perturbed forward passes.

Both run ``K`` extra forward passes per image (``K`` = the layer's channels), batched ``batch_size``
rows at a time, and score every selected class of an image from the same passes (the peers run
everything once per class).

``scorecam``
    each channel, upsampled to the input (bilinear) and min-max normalised, masks the input; the
    class scores of the ``K`` masked inputs, softmaxed over the channels, are the weights
    (Wang et al., 2020, Algorithm 1). A baseline score would cancel in the softmax.
``ablationcam``
    each channel of the layer is set to zero in turn; ``w_k = (y_c - y_c^k) / y_c`` with ``y_c^k``
    the score without channel ``k`` (Desai & Ramaswamy, 2020). Only the network above the layer is
    re-run: the layers below run once per image (checked to give the same numbers).
"""

from __future__ import annotations

from typing import Any

import torch

from camloc.cams.catalog import CATALOG
from camloc.cams.engine import CAMMethod, CamContext
from camloc.cams.postprocess import upsample
from camloc.errors import ConfigError

__all__ = ["AblationCAM", "ScoreCAM"]


class ScoreCAM(CAMMethod):
    """Score-CAM: ``w = softmax_k(y_c(x * H_k))`` with ``H_k`` the upsampled, min-max normalised
    channel ``k``; map ``ReLU(sum_k w_k A_k)``. ``eps`` is added to the normalisation's range
    (pytorch-grad-cam uses 1e-8; 0 leaves constant channels as zero masks)."""

    info = CATALOG["scorecam"]

    def __init__(self, *args: Any, eps: float = 0.0, **kwargs: Any) -> None:
        if not (eps >= 0.0):
            raise ConfigError(f"eps={eps!r}: must be >= 0")
        self.eps = float(eps)
        super().__init__(*args, **kwargs)

    def channel_weights(self, ctx: CamContext, i: int) -> torch.Tensor:
        a = ctx.features[i]
        n, k_ch = a.shape[:2]
        ids = ctx.class_ids
        x = ctx.x

        def masked(start: int, stop: int) -> torch.Tensor:
            rows = torch.arange(start, stop, device=a.device)
            img, ch = rows // k_ch, rows % k_ch
            up = upsample(a[img, ch][:, None], ctx.input_hw, "bilinear")  # (B, 1, H, W)
            flat = up.flatten(1)
            lo, hi = flat.amin(1), flat.amax(1)
            rng = (hi - lo + self.eps).view(-1, 1, 1, 1)
            ok = rng > 0
            mask = torch.where(ok, (up - lo.view(-1, 1, 1, 1)) / torch.where(ok, rng, torch.ones_like(rng)),
                               torch.zeros_like(up))
            return x[img] * mask.to(x.dtype)

        def pick(logits: torch.Tensor, start: int, stop: int) -> torch.Tensor:
            img = torch.arange(start, stop, device=logits.device) // k_ch
            return logits.gather(1, ids[img].to(logits.device))  # (B, k)

        scores = ctx.logits_of(masked, n * k_ch, pick).view(n, k_ch, -1)  # (N, K, k)
        return scores.softmax(dim=1).transpose(1, 2)  # (N, k, K)


class AblationCAM(CAMMethod):
    """Ablation-CAM: ``w_k = (y_c - y_c^k) / y_c`` (0 where ``y_c = 0``), ``y_c^k`` the class score
    with channel ``k`` of the layer zeroed; map ``ReLU(sum_k w_k A_k)``."""

    info = CATALOG["ablationcam"]

    def channel_weights(self, ctx: CamContext, i: int) -> torch.Tensor:
        a = ctx.features[i]
        raw = ctx.raws[i]
        n, k_ch = a.shape[:2]
        ids = ctx.class_ids
        y = ctx.logits.float().gather(1, ids)  # (N, k)
        weights = torch.zeros((n, ids.shape[1], k_ch), device=a.device)
        for img in range(n):
            for start in range(0, k_ch, self.batch_size):
                ch = torch.arange(start, min(k_ch, start + self.batch_size), device=a.device)
                b = len(ch)
                removed = torch.zeros((b, *a.shape[1:]), device=a.device, dtype=a.dtype)
                removed[torch.arange(b, device=a.device), ch] = a[img, ch]
                values = raw[img:img + 1].expand(b, *raw.shape[1:]) - ctx.to_raw(i, removed)
                yk = ctx.logits_with_layer(i, img, values).gather(
                    1, ids[img:img + 1].expand(b, -1).to(a.device))  # (B, k)
                yi = y[img][None, :]
                ok = yi != 0
                drop = torch.where(ok, (yi - yk) / torch.where(ok, yi, torch.ones_like(yi)),
                                   torch.zeros_like(yk))
                weights[img, :, start:start + b] = drop.t()
        return weights
