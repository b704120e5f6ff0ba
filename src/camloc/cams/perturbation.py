"""Perturbation methods: channel weights from the scores of perturbed forward passes.

Both run ``K`` extra forward passes per image (``K`` = the layer's channels), batched ``batch_size``
rows at a time, and score every target of an image (by default its selected classes' logits, see
:mod:`camloc.targets`) from the same passes (the peers run everything once per class).

``scorecam``
    each channel, upsampled to the input (bilinear) and min-max normalised, masks the input; the
    class scores of the ``K`` masked inputs, softmaxed over the channels, are the weights
    (Wang et al., 2020, Algorithm 1). A baseline score would cancel in the softmax. Channels that
    are zero everywhere give the same all-zero input: it is scored once.
``ablationcam``
    each channel of the layer is set to zero in turn; ``w_k = (y_c - y_c^k) / y_c`` with ``y_c^k``
    the score without channel ``k`` (Desai & Ramaswamy, 2020). Only the network above the layer is
    re-run: the layers below run once per image (checked to give the same numbers). Channels that
    are zero everywhere are not ablated: their term ``w_k A_k`` is zero whatever ``w_k``.
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
        target = ctx.target
        x = ctx.x
        # A channel that is zero everywhere masks the input to zeros, the same input for every such
        # row of every image: its scores come from one forward pass (sparse post-ReLU layers have
        # many; efficientnet_lite0's last layer over 3/4 of its channels on a photo).
        live = a.flatten(2).ne(0).any(dim=2).flatten()  # (N K,) rows whose mask is computed
        rows_live = live.nonzero().flatten()

        def masked(start: int, stop: int) -> torch.Tensor:
            rows = rows_live[start:stop]
            img, ch = rows // k_ch, rows % k_ch
            up = upsample(a[img, ch][:, None], ctx.input_hw, "bilinear")  # (B, 1, H, W)
            lo, hi = torch.aminmax(up.flatten(1), dim=1)
            rng = hi - lo + self.eps
            # (up - lo) / range, in place; a constant channel (range 0) gives the zero mask
            scale = torch.where(rng > 0, 1.0 / torch.where(rng > 0, rng, torch.ones_like(rng)),
                                torch.zeros_like(rng))
            mask = up.sub_(lo.view(-1, 1, 1, 1)).mul_(scale.view(-1, 1, 1, 1)).to(x.dtype)
            first = int(img[0])
            if bool((img == first).all()):  # one image's rows (the usual case): broadcast it
                return x[first:first + 1] * mask
            return x[img].mul_(mask)  # x[img] is a fresh copy

        def pick(logits: torch.Tensor, start: int, stop: int) -> torch.Tensor:
            img = rows_live[start:stop].to(logits.device) // k_ch
            return target.scores(logits, img)  # (B, k)

        scores = torch.empty((n * k_ch, ctx.class_ids.shape[1]), device=a.device)
        if len(rows_live):
            scores[rows_live] = ctx.logits_of(masked, len(rows_live), pick).to(scores.device)
        if len(rows_live) < n * k_ch:
            zero = ctx.logits_of(lambda _s, _e: torch.zeros_like(x[:1]), 1)[0]  # (C,)
            rows_dead = (~live).nonzero().flatten()
            zeros = zero.to(a.device)[None].expand(len(rows_dead), -1)
            scores[rows_dead] = target.scores(zeros, rows_dead // k_ch).to(scores.dtype)
        return scores.view(n, k_ch, -1).softmax(dim=1).transpose(1, 2)  # (N, k, K)


class AblationCAM(CAMMethod):
    """Ablation-CAM: ``w_k = (y_c - y_c^k) / y_c`` (0 where ``y_c = 0``), ``y_c^k`` the class score
    with channel ``k`` of the layer zeroed; map ``ReLU(sum_k w_k A_k)``."""

    info = CATALOG["ablationcam"]

    def channel_weights(self, ctx: CamContext, i: int) -> torch.Tensor:
        a = ctx.features[i]
        raw = ctx.raws[i]
        n, k_ch = a.shape[:2]
        target = ctx.target
        y = target.scores(ctx.logits.float()).to(a.device)  # (N, k)
        weights = torch.zeros((n, y.shape[1], k_ch), device=a.device)
        # a channel that is zero everywhere contributes nothing to the map whatever its weight:
        # only the others are ablated (their weights stay 0)
        live = a.flatten(2).ne(0).any(dim=2)  # (N, K)
        for img in range(n):
            active = live[img].nonzero().flatten()
            for start in range(0, len(active), self.batch_size):
                ch = active[start:start + self.batch_size]
                b = len(ch)
                removed = torch.zeros((b, *a.shape[1:]), device=a.device, dtype=a.dtype)
                removed[torch.arange(b, device=a.device), ch] = a[img, ch]
                values = raw[img:img + 1].expand(b, *raw.shape[1:]) - ctx.to_raw(i, removed)
                rows = torch.full((b,), img, dtype=torch.long, device=a.device)
                yk = target.scores(ctx.logits_with_layer(i, img, values), rows).to(a.device)  # (B, k)
                yi = y[img][None, :]
                ok = yi != 0
                drop = torch.where(ok, (yi - yk) / torch.where(ok, yi, torch.ones_like(yi)),
                                   torch.zeros_like(yk))
                weights[img, :, ch] = drop.t()
        return weights
