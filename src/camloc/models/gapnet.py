"""``GapNet``: a backbone's last spatial features -> global pooling -> one linear layer.

This is the architecture CAM is exact for, and the form every network camloc trains or converts
takes (``camloc.models.archs`` builds them). ``pool="avg"`` is global average pooling (GAP);
``pool="max"`` is global max pooling (GMP, for the paper's comparison).

>>> import torch
>>> from torch import nn
>>> net = GapNet(nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 5))
>>> net(torch.zeros(2, 3, 16, 16)).shape
torch.Size([2, 5])
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from camloc.errors import ConfigError
from camloc.models.pooling import global_pool

__all__ = ["GapNet"]


class GapNet(nn.Module):
    """``classifier(pool(features(x)))`` with the three parts as named attributes."""

    def __init__(self, features: nn.Module, classifier: nn.Linear,
                 pool: Literal["avg", "max"] = "avg", dropout: float = 0.0) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ConfigError(f"pool={pool!r}: expected 'avg' (GAP) or 'max' (GMP)")
        if not isinstance(classifier, nn.Linear):
            raise ConfigError("classifier must be an nn.Linear")
        self.features = features
        self.pool = pool
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last spatial feature map ``(N, K, h, w)``."""
        return self.features(x)

    def pooled(self, f: torch.Tensor) -> torch.Tensor:
        return global_pool(f, self.pool)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pooled(f)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
