"""Each unit's top-activating images, kept in a bounded store (flat memory, exact merges).

For every unit ``k`` the store holds at most ``capacity`` entries: the images with the highest
peak activation ``max_xy f'_k`` seen so far, each with its low-resolution map (so the region can be
cut once the dataset-wide threshold is known) and the image size. The order is total and
deterministic: peak activation (descending), then mean activation (descending), then dataset index
(ascending). Saturating activations (ReLU6 units stuck at 6) make ties common, and the fixed
tie-break is what makes a merge of shards, or of a resumed run, identical to a single pass.

>>> import torch
>>> a, b = TopImages(units=2, capacity=2, map_shape=(1, 1)), TopImages(2, 2, (1, 1))
>>> maps = torch.tensor([[[[1.0]], [[5.0]]], [[[3.0]], [[4.0]]], [[[2.0]], [[6.0]]]])  # (N=3, K=2)
>>> a.update(maps[:2], torch.tensor([0, 1]), torch.tensor([[9, 9], [9, 9]]))
>>> b.update(maps[2:], torch.tensor([2]), torch.tensor([[9, 9]]))
>>> a.merge(b).index.tolist()
[[1, 2], [2, 0]]
"""

from __future__ import annotations

from typing import Any

import torch

from camloc.errors import ConfigError

__all__ = ["TopImages"]

_EMPTY = torch.iinfo(torch.int64).max


class TopImages:
    """Bounded per-unit store of the top ``capacity`` images; see the module docstring.

    Tensors (on one device): ``score`` (K, m) peak activation (``-inf`` where empty), ``tie``
    (K, m) mean activation, ``index`` (K, m) dataset index (``-1`` where empty), ``maps``
    (K, m, h, w) float32, ``sizes`` (K, m, 2) original ``(width, height)``.
    """

    def __init__(self, units: int, capacity: int, map_shape: tuple[int, int],
                 device: str | torch.device = "cpu") -> None:
        if capacity < 1:
            raise ConfigError(f"top images per unit must be >= 1, got {capacity}")
        self.units, self.capacity = int(units), int(capacity)
        self.map_shape = (int(map_shape[0]), int(map_shape[1]))
        k, m = self.units, self.capacity
        self.score = torch.full((k, m), float("-inf"), device=device)
        self.tie = torch.full((k, m), float("-inf"), device=device)
        self.index = torch.full((k, m), -1, dtype=torch.int64, device=device)
        self.maps = torch.zeros((k, m, *self.map_shape), device=device)
        self.sizes = torch.zeros((k, m, 2), dtype=torch.int64, device=device)

    @property
    def device(self) -> torch.device:
        return self.score.device

    def to(self, device: str | torch.device) -> TopImages:
        for name in ("score", "tie", "index", "maps", "sizes"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _keep_best(self, score: torch.Tensor, tie: torch.Tensor, index: torch.Tensor,
                   maps: torch.Tensor, sizes: torch.Tensor) -> None:
        """Sort candidates ``(K, n)`` by (score desc, tie desc, index asc); keep the first m."""
        key_index = torch.where(index < 0, torch.full_like(index, _EMPTY), index)
        order = torch.argsort(key_index, dim=1, stable=True)
        for key in (tie, score):
            k2 = key.gather(1, order)
            order = order.gather(1, torch.argsort(k2, dim=1, descending=True, stable=True))
        order = order[:, :self.capacity]
        self.score = score.gather(1, order)
        self.tie = tie.gather(1, order)
        self.index = index.gather(1, order)
        h, w = self.map_shape
        self.maps = maps.gather(1, order[:, :, None, None].expand(-1, -1, h, w)).contiguous()
        self.sizes = sizes.gather(1, order[:, :, None].expand(-1, -1, 2)).contiguous()

    def update(self, maps: torch.Tensor, index: torch.Tensor, sizes: torch.Tensor) -> None:
        """Offer a batch: ``maps`` (N, K, h, w) unit maps of images ``index`` (N,) whose original
        sizes are ``sizes`` (N, 2)."""
        if maps.dim() != 4 or maps.shape[1] != self.units or tuple(maps.shape[2:]) != self.map_shape:
            raise ConfigError(f"maps: expected (N, {self.units}, {self.map_shape[0]}, "
                              f"{self.map_shape[1]}), got {tuple(maps.shape)}")
        if maps.shape[0] == 0:
            return
        dev = self.device
        maps = maps.detach().float().to(dev)
        peak = torch.nan_to_num(maps.amax(dim=(2, 3)), nan=float("-inf")).t()  # (K, N)
        mean = torch.nan_to_num(maps.mean(dim=(2, 3)), nan=float("-inf")).t()
        n = maps.shape[0]
        idx = index.to(dev, torch.int64)[None, :].expand(self.units, n)
        sz = sizes.to(dev, torch.int64)[None, :, :].expand(self.units, n, 2)
        self._keep_best(torch.cat([self.score, peak], 1), torch.cat([self.tie, mean], 1),
                        torch.cat([self.index, idx], 1),
                        torch.cat([self.maps, maps.transpose(0, 1)], 1),
                        torch.cat([self.sizes, sz], 1))

    def merge(self, other: TopImages) -> TopImages:
        """Combine with another store (same units, capacity and map shape); exact: the result is
        what one pass over both stores' images would have kept."""
        if (other.units, other.capacity, other.map_shape) != (self.units, self.capacity,
                                                              self.map_shape):
            raise ConfigError(f"cannot merge top-image stores of different shapes: "
                              f"{(self.units, self.capacity, self.map_shape)} vs "
                              f"{(other.units, other.capacity, other.map_shape)}")
        o = other.to(self.device)
        self._keep_best(torch.cat([self.score, o.score], 1), torch.cat([self.tie, o.tie], 1),
                        torch.cat([self.index, o.index], 1), torch.cat([self.maps, o.maps], 1),
                        torch.cat([self.sizes, o.sizes], 1))
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"units": self.units, "capacity": self.capacity, "map_shape": list(self.map_shape),
                "score": self.score.cpu(), "tie": self.tie.cpu(), "index": self.index.cpu(),
                "maps": self.maps.cpu(), "sizes": self.sizes.cpu()}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> TopImages:
        t = cls(int(d["units"]), int(d["capacity"]), tuple(d["map_shape"]))  # type: ignore[arg-type]
        for name in ("score", "tie", "index", "maps", "sizes"):
            setattr(t, name, d[name])
        return t
