"""Gradient methods: maps from the gradients of a class score w.r.t. a layer's activations.

Notation (per image, per selected class ``c``, per layer): ``A`` the layer's map ``(K, h, w)``,
``g = dy_c / dA`` (``y_c`` the logit, before softmax). Gradients flow only from the logits down to
the target layer (the network below it runs without autograd), one backward per selected class.

Every method here takes ``smooth=n`` (SmoothGrad: ``g``, and every power of ``g`` a method reads,
averaged over ``n`` noisy copies of the input, noise std ``noise * (max(x) - min(x))``; the
activations ``A`` stay those of the clean input). ``smoothgradcam++`` is Grad-CAM++ with ``n = 8``.
The formulas, papers and where the peers differ are in docs/methods.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from camloc.cams.catalog import CATALOG
from camloc.cams.engine import CAMMethod, CamContext
from camloc.errors import ConfigError

__all__ = ["GradCAM", "GradCAMpp", "HiResCAM", "LayerCAM", "SmoothGradCAMpp", "XGradCAM"]


def _check_eps(eps: float) -> float:
    if not (eps >= 0.0):
        raise ConfigError(f"eps={eps!r}: must be >= 0")
    return float(eps)


class GradCAM(CAMMethod):
    """Grad-CAM: ``w_k = mean_xy g_k``; map ``ReLU(sum_k w_k A_k)``.

    On a GAP -> linear network its maps equal exact CAM's divided by ``h * w`` (before the ReLU).
    """

    info = CATALOG["gradcam"]
    grad_powers: ClassVar[tuple[int, ...]] = (1,)

    def channel_weights(self, ctx: CamContext, i: int) -> torch.Tensor:
        return ctx.grads(i).mean(dim=(3, 4))


class GradCAMpp(CAMMethod):
    """Grad-CAM++: ``w_k = sum_xy alpha_kxy ReLU(g_kxy)`` with
    ``alpha = g^2 / (2 g^2 + sum_ab A_kab g^3)`` (0 where ``g = 0``); map ``ReLU(sum_k w_k A_k)``.

    ``eps`` is added to the denominator (0: the paper's formula; pytorch-grad-cam uses 1e-6).
    """

    info = CATALOG["gradcam++"]
    grad_powers: ClassVar[tuple[int, ...]] = (1, 2, 3)

    def __init__(self, *args: Any, eps: float = 0.0, **kwargs: Any) -> None:
        self.eps = _check_eps(eps)
        super().__init__(*args, **kwargs)

    def channel_weights(self, ctx: CamContext, i: int) -> torch.Tensor:
        g1, g2, g3 = (ctx.grad_power(i, p) for p in (1, 2, 3))
        sum_a = ctx.features[i].sum(dim=(2, 3))[:, None, :, None, None]  # (N, 1, K, 1, 1)
        denom = 2 * g2 + sum_a * g3 + self.eps
        ok = (g2 != 0) & (denom != 0)
        alpha = torch.where(ok, g2 / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(g2))
        return (alpha * g1.clamp_min(0)).sum(dim=(3, 4))


class SmoothGradCAMpp(GradCAMpp):
    """Smooth Grad-CAM++: Grad-CAM++ with ``g, g^2, g^3`` averaged over ``smooth`` noisy inputs."""

    info = CATALOG["smoothgradcam++"]
    default_smooth: ClassVar[int] = 8


class XGradCAM(CAMMethod):
    """XGrad-CAM: ``w_k = sum_xy g_kxy A_kxy / sum_xy A_kxy`` (0 where the sum is 0); map
    ``ReLU(sum_k w_k A_k)``. ``eps`` is added to the denominator (torchcam 1e-8, grad-cam 1e-7)."""

    info = CATALOG["xgradcam"]
    grad_powers: ClassVar[tuple[int, ...]] = (1,)

    def __init__(self, *args: Any, eps: float = 0.0, **kwargs: Any) -> None:
        self.eps = _check_eps(eps)
        super().__init__(*args, **kwargs)

    def channel_weights(self, ctx: CamContext, i: int) -> torch.Tensor:
        a = ctx.features[i]
        num = (ctx.grads(i) * a[:, None]).sum(dim=(3, 4))  # (N, k, K)
        den = (a.sum(dim=(2, 3)) + self.eps)[:, None, :]
        ok = den != 0
        return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


class HiResCAM(CAMMethod):
    """HiResCAM: ``M = sum_k g_k * A_k`` element-wise, no channel averaging and no ReLU (the paper's
    map; on a GAP -> linear network it equals exact CAM divided by ``h * w``)."""

    info = CATALOG["hirescam"]
    relu_default = False
    grad_powers: ClassVar[tuple[int, ...]] = (1,)

    def map(self, ctx: CamContext, i: int) -> torch.Tensor:
        return torch.einsum("njkhw,nkhw->njhw", ctx.grads(i), ctx.features[i])


class LayerCAM(CAMMethod):
    """LayerCAM: ``M = ReLU(sum_k ReLU(g_k) * A_k)``, every location weighted by its own gradient."""

    info = CATALOG["layercam"]
    grad_powers: ClassVar[tuple[int, ...]] = (1,)

    def map(self, ctx: CamContext, i: int) -> torch.Tensor:
        return torch.einsum("njkhw,nkhw->njhw", ctx.grads(i).clamp_min(0), ctx.features[i])
