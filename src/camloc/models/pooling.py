"""Global pooling of a feature map: the one ``(N, K, h, w) -> (N, K)`` every part uses.

``pool="avg"`` is global average pooling (GAP: the mean over the ``h x w`` positions, what a
GAP -> linear head and exact CAM assume); ``pool="max"`` is global max pooling (GMP).

>>> import torch
>>> f = torch.arange(8.0).reshape(1, 2, 2, 2)
>>> global_pool(f).tolist(), global_pool(f, "max").tolist()
([[1.5, 5.5]], [[3.0, 7.0]])
"""

from __future__ import annotations

import torch

__all__ = ["global_pool"]


def global_pool(f: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """``f`` ``(N, K, h, w)`` pooled over its last two dims to ``(N, K)``: the mean for ``"avg"``
    (GAP), the maximum for ``"max"`` (GMP). ``pool`` is validated where a head is built."""
    return f.amax(dim=(2, 3)) if pool == "max" else f.mean(dim=(2, 3))
