"""A fixed-size, exactly mergeable sketch of each unit's activation distribution.

Network dissection thresholds a unit's upsampled map at a quantile of that unit's activations over
the whole dataset (the top 0.5%). An exact quantile needs every value; this sketch keeps, per unit,
counts in logarithmic buckets instead (the DDSketch construction: bucket ``i`` holds magnitudes in
``(m g^(i-1), m g^i]`` with ``g = (1 + a) / (1 - a)``), so

- memory is fixed: ``units x (2 * buckets + 1)`` int64 counts, whatever the dataset size;
- two sketches merge exactly (counts add), so shards and resumed runs give the same sketch as one
  pass;
- a quantile comes back within relative error ``a`` (default 1%) of the exact one, for magnitudes
  in ``[min_abs, max_abs]`` (default ``1e-4 .. 1e4``; smaller magnitudes count as 0, larger ones are
  clamped into the outermost bucket).

>>> import torch
>>> s = QuantileSketch(units=1)
>>> s.update(torch.arange(1, 1001, dtype=torch.float32)[None])
>>> exact = 995.0  # the value at rank floor(0.995 * 999) of 1..1000
>>> abs(float(s.quantile(0.995)[0]) - exact) <= 0.01 * exact
True
"""

from __future__ import annotations

import math
from typing import Any

import torch

from camloc.errors import ConfigError

__all__ = ["QuantileSketch"]


class QuantileSketch:
    """Per-unit log-bucket histogram of values; see the module docstring."""

    def __init__(self, units: int, rel_accuracy: float = 0.01, min_abs: float = 1e-4,
                 max_abs: float = 1e4, counts: torch.Tensor | None = None) -> None:
        if not 0.0 < rel_accuracy < 0.5:
            raise ConfigError(f"rel_accuracy={rel_accuracy}: expected 0 < a < 0.5")
        if not 0.0 < min_abs < max_abs:
            raise ConfigError(f"min_abs={min_abs}, max_abs={max_abs}: expected 0 < min < max")
        self.units = int(units)
        self.rel_accuracy = float(rel_accuracy)
        self.min_abs, self.max_abs = float(min_abs), float(max_abs)
        self.gamma = (1.0 + rel_accuracy) / (1.0 - rel_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.side = int(math.ceil(math.log(max_abs / min_abs) / self._log_gamma)) + 1
        nbins = 2 * self.side + 1
        if counts is None:
            counts = torch.zeros(self.units, nbins, dtype=torch.int64)
        elif tuple(counts.shape) != (self.units, nbins):
            raise ConfigError(f"sketch counts of shape {tuple(counts.shape)} do not fit "
                              f"({self.units}, {nbins})")
        self.counts = counts

    @property
    def total(self) -> torch.Tensor:
        """Number of values seen per unit."""
        return self.counts.sum(dim=1)

    def settings(self) -> dict[str, Any]:
        return {"units": self.units, "rel_accuracy": self.rel_accuracy, "min_abs": self.min_abs,
                "max_abs": self.max_abs}

    def to(self, device: str | torch.device) -> QuantileSketch:
        self.counts = self.counts.to(device)
        return self

    def _bucket(self, v: torch.Tensor) -> torch.Tensor:
        a = v.abs()
        i = torch.ceil(torch.log(a.clamp_min(self.min_abs) / self.min_abs) / self._log_gamma)
        i = i.clamp(0, self.side - 1).long()
        zero = self.side
        idx = torch.where(v > 0, zero + 1 + i, zero - 1 - i)
        small = (a < self.min_abs) | torch.isnan(v)
        return torch.where(small, torch.full_like(idx, zero), idx)

    def update(self, values: torch.Tensor) -> None:
        """Add ``values`` of shape ``(units, n)`` (any float dtype, any device)."""
        if values.dim() != 2 or values.shape[0] != self.units:
            raise ConfigError(f"values: expected ({self.units}, n), got {tuple(values.shape)}")
        if values.shape[1] == 0:
            return
        v = values.detach().to(torch.float64)
        nb = self.counts.shape[1]
        flat = self._bucket(v) + torch.arange(self.units, device=v.device)[:, None] * nb
        add = torch.bincount(flat.reshape(-1), minlength=self.units * nb).view(self.units, nb)
        self.counts += add.to(self.counts.device)

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """Add ``other``'s counts (same settings) to this sketch; exact."""
        if other.settings() != self.settings():
            raise ConfigError(f"cannot merge sketches with different settings: {self.settings()} "
                              f"vs {other.settings()}")
        self.counts += other.counts.to(self.counts.device)
        return self

    def bucket_values(self) -> torch.Tensor:
        """The value each bucket stands for (its midpoint in relative terms), float64."""
        i = torch.arange(self.side, dtype=torch.float64)
        pos = self.min_abs * self.gamma ** i * (2.0 / (self.gamma + 1.0))
        return torch.cat([-pos.flip(0), torch.zeros(1, dtype=torch.float64), pos])

    def bucket_lower_edges(self) -> torch.Tensor:
        """The lower edge of each bucket (float64): no value in the bucket lies below it (the
        zero bucket, magnitudes below ``min_abs``, gives 0)."""
        i = torch.arange(self.side, dtype=torch.float64)
        pos = self.min_abs * self.gamma ** (i - 1)
        neg = -(self.min_abs * self.gamma ** i)
        # the zero bucket (|x| < min_abs) counts as 0: a unit must be positive to exceed it
        return torch.cat([neg.flip(0), torch.zeros(1, dtype=torch.float64), pos])

    def quantile(self, q: float, edge: str = "mid") -> torch.Tensor:
        """``(units,)`` float64: the value at rank ``floor(q * (n - 1))`` of each unit's sorted
        values (NaN for a unit that saw nothing).

        ``edge="mid"``: within the relative accuracy ``a`` of the exact value. ``edge="lower"``:
        the lower edge of the bucket holding it: never above the exact value and at most ``2a``
        (relative) below it, so values tied with it (a saturated ReLU6 unit's many 6.0s) lie
        above the returned threshold (0 when the value is within ``min_abs`` of 0).
        """
        if not 0.0 <= q <= 1.0:
            raise ConfigError(f"q={q}: expected 0 <= q <= 1")
        if edge not in ("mid", "lower"):
            raise ConfigError(f"edge={edge!r}: expected 'mid' or 'lower'")
        counts = self.counts.cpu()
        cum = counts.cumsum(dim=1)
        total = cum[:, -1]
        rank = torch.floor(q * (total - 1).clamp_min(0).to(torch.float64)).long()
        idx = torch.searchsorted(cum, rank[:, None], right=True).squeeze(1)
        idx = idx.clamp(max=counts.shape[1] - 1)
        values = self.bucket_values() if edge == "mid" else self.bucket_lower_edges()
        out = values[idx]
        return torch.where(total > 0, out, torch.full_like(out, float("nan")))

    def state_dict(self) -> dict[str, Any]:
        return {**self.settings(), "counts": self.counts.cpu()}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> QuantileSketch:
        return cls(int(d["units"]), float(d["rel_accuracy"]), float(d["min_abs"]),
                   float(d["max_abs"]), counts=d["counts"])
