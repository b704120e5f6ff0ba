"""The head search at a smaller probe size (what keeps ``load_model`` quick) gives the full-size result.

``load_model``/``wrap`` look for the GAP -> linear head at about half the input side first and keep
that result only for a channels-first head with nothing later that could be a map of its width;
everything else is searched again at the model's own size.
"""

from __future__ import annotations

import torch
from torch import nn

import camloc
from camloc.models.heads import discover_gap_head


class _Net(nn.Module):
    """conv features (8 channels) -> a head: GAP -> linear, GAP -> MLP, or a 2x2 grid -> linear."""

    def __init__(self, head: str = "gap", only_size: int | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8),
                                      nn.Conv2d(8, 8, 3, stride=4, padding=1))
        self.head = head
        self.only_size = only_size
        if head == "gap":
            self.fc = nn.Sequential(nn.Linear(8, 5))
        elif head == "mlp":
            self.fc = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 5))
        else:  # "grid": position-dependent weights, not global pooling
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Sequential(nn.Linear(32, 5))
        self.sizes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape))
        if self.only_size is not None and x.shape[-1] != self.only_size:
            raise RuntimeError(f"this model takes {self.only_size}x{self.only_size} inputs only")
        f = self.features(x)
        if self.head == "grid":
            return self.fc(self.pool(f).flatten(1))
        return self.fc(f.mean(dim=(2, 3)))


def _key(head):
    return None if head is None else (head.feature_name, head.pool, head.post_relu, head.kind,
                                      head.layout)


def test_gap_head_is_found_at_half_size_and_equals_the_full_size_one():
    torch.manual_seed(0)
    net = _Net("gap")
    m = camloc.wrap(net, input_size=(128, 128))
    assert (2, 3, 64, 64) in net.sizes and (2, 3, 128, 128) not in net.sizes  # the quick pass only
    assert m.head is not None and _key(m.head) == _key(discover_gap_head(net, (128, 128)).head)
    from camloc.cams import CAM

    out = CAM(m)(torch.randn(2, 3, 128, 128), classes="all")
    torch.testing.assert_close(out.maps.mean((2, 3)) + out.bias, out.logits, rtol=1e-4, atol=1e-4)


def test_heads_that_are_not_global_pooling_are_still_refused_with_the_full_size_reason():
    for kind in ("mlp", "grid"):
        torch.manual_seed(0)
        net = _Net(kind)
        m = camloc.wrap(net, input_size=(128, 128))
        assert m.head is None, kind
        assert (2, 3, 128, 128) in net.sizes  # searched again at the model's own size
        assert m.head_reason == discover_gap_head(net, (128, 128)).reason


def test_a_model_that_only_runs_at_its_own_size_still_gets_its_head():
    torch.manual_seed(0)
    net = _Net("gap", only_size=128)
    m = camloc.wrap(net, input_size=(128, 128))
    assert m.head is not None and m.head.feature_name == "features"
