"""Projection methods: maps from the structure of the activations alone (no class, no gradient).

``eigencam`` (Muhammad & Yeasin, 2020): with the layer's activations of one image as an
``(h*w, K)`` matrix ``A = U S V^T``, the map is ``A v_1``, the projection of every location on the
first right singular vector. An SVD's sign is arbitrary; camloc picks the sign that makes the map
agree with the channel-mean activation (so the map is positive where the layer is active). The
paper does not centre ``A``; ``center=True`` subtracts the per-channel mean first, as
pytorch-grad-cam does. The same map is returned for every selected class.
"""

from __future__ import annotations

from typing import Any

import torch

from camloc.cams.catalog import CATALOG
from camloc.cams.engine import CAMMethod, CamContext

__all__ = ["EigenCAM"]


def first_component_projection(features: torch.Tensor, center: bool = False) -> torch.Tensor:
    """``(N, K, h, w)`` -> ``(N, h, w)``: each image's activations projected on their first right
    singular vector, sign-aligned with the channel-mean activation (computed in float64)."""
    n, k, h, w = features.shape
    a = features.reshape(n, k, h * w).transpose(1, 2).double()  # (N, hw, K)
    a = torch.nan_to_num(a)
    if center:
        a = a - a.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(a, full_matrices=False)
    proj = (a @ vh[:, 0, :, None])[..., 0]  # (N, hw)
    ref = features.reshape(n, k, h * w).double().mean(dim=1)
    sign = torch.where((proj * ref).sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    return (proj * sign).reshape(n, h, w).to(features.dtype)


class EigenCAM(CAMMethod):
    """Eigen-CAM: the activations' first principal direction (class-agnostic; no ReLU, as the paper)."""

    info = CATALOG["eigencam"]
    relu_default = False

    def __init__(self, *args: Any, center: bool = False, **kwargs: Any) -> None:
        self.center = bool(center)
        super().__init__(*args, **kwargs)

    def map(self, ctx: CamContext, i: int) -> torch.Tensor:
        proj = first_component_projection(ctx.features[i], self.center)
        return proj[:, None].expand(-1, ctx.class_ids.shape[1], -1, -1)
