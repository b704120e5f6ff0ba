"""The architectures camloc trains: the paper's conversions, ResNets, any:NAME, tiny-cnn."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from camloc.errors import ConfigError, WeightsError
from camloc.models.archs import (arch_info, backbone_parameters, build_arch, list_archs,
                                 new_parameters)
from camloc.models.gapnet import GapNet
from camloc.models.heads import find_gap_head

CONVERSIONS = [
    # name, kwargs, channels, map size at 224
    ("vgg16-gap", {}, 1024, 14),
    ("alexnet-gap", {}, 1024, 13),
    ("googlenet-gap", {}, 1024, 14),
    ("resnet50-gap", {"last_stride": 1}, 2048, 14),
]


@pytest.mark.parametrize("name,kwargs,channels,size", CONVERSIONS,
                         ids=[c[0] for c in CONVERSIONS])
def test_conversion_map_size_and_verified_head(name, kwargs, channels, size):
    torch.manual_seed(0)
    net = build_arch(name, num_classes=7, **kwargs)
    assert isinstance(net, GapNet)
    assert net.classifier.in_features == channels and net.classifier.out_features == 7
    net.eval()
    with torch.no_grad():
        f = net.forward_features(torch.randn(1, 3, 224, 224))
        logits = net.forward_head(f)
    assert tuple(f.shape) == (1, channels, size, size)
    assert tuple(logits.shape) == (1, 7)
    # the head finder recognises and numerically verifies GAP -> linear (size-independent check)
    head = find_gap_head(net, (64, 64))
    assert head.method == "gapnet" and head.classifier is net.classifier
    assert head.num_channels == channels


def test_paper_conversions_add_a_1024_conv_and_mark_new_layers():
    net = build_arch("alexnet-gap", num_classes=3)
    conv = net.features.extra[0]
    assert isinstance(conv, torch.nn.Conv2d)
    assert (conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == \
        (1024, (3, 3), (1, 1), (1, 1))
    new = {id(p) for p in new_parameters(net)}
    assert new == {id(conv.weight), id(conv.bias), id(net.classifier.weight),
                   id(net.classifier.bias)}
    old = backbone_parameters(net)
    assert old and not any(id(p) in new for p in old)
    assert len(old) + len(new) == len(list(net.parameters()))


def test_resnet_last_stride():
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # output stride 16 with last_stride=1, 32 without
        assert build_arch("resnet18-gap", 2).eval().forward_features(x).shape[-1] == 4
        net = build_arch("resnet18-gap", 2, last_stride=2).eval()
        assert net.forward_features(x).shape[-1] == 2
    with pytest.raises(ConfigError, match="last_stride"):
        build_arch("resnet18-gap", 2, last_stride=3)


def test_tiny_cnn_size_and_pools():
    net = build_arch("tiny-cnn", num_classes=4)
    n = sum(p.numel() for p in net.parameters())
    assert 100_000 <= n <= 300_000
    gmp = build_arch("tiny-cnn", num_classes=4, pool="gmp")
    assert gmp.pool == "max" and find_gap_head(gmp, (32, 32)).pool == "max"
    assert arch_info("tiny-cnn").options == ("width",)
    assert {"vgg16-gap", "alexnet-gap", "googlenet-gap", "resnet18-gap", "resnet34-gap",
            "resnet50-gap", "tiny-cnn"} <= set(list_archs())


def test_any_reuses_a_gap_backbone():
    torch.manual_seed(0)
    net = build_arch("any:timm:resnet10t", num_classes=5)
    assert isinstance(net, GapNet) and net.classifier.out_features == 5
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    assert find_gap_head(net, (64, 64)).method == "gapnet"
    # torchvision model, found by tracing (classifier replaced, features tapped)
    tv = build_arch("any:mobilenet_v2", num_classes=3)
    with torch.no_grad():
        assert tv.eval().forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 1280, 2, 2)
    assert len(new_parameters(tv)) == 2


def test_any_refuses_heads_that_are_not_gap_linear():
    with pytest.raises(ConfigError, match="not global pooling"):
        build_arch("any:mobilenet_v3_small", num_classes=3)
    with pytest.raises(ConfigError, match="unknown"):
        build_arch("vgg19-gap", num_classes=3)
    with pytest.raises(ConfigError, match="not a registered architecture"):
        build_arch("no_such_model_xyz", num_classes=3)
    with pytest.raises(ConfigError, match="unknown option"):
        build_arch("tiny-cnn", num_classes=3, last_stride=1)
    with pytest.raises(ConfigError, match="pool"):
        build_arch("tiny-cnn", num_classes=3, pool="median")
    with pytest.raises(ConfigError, match="num_classes"):
        build_arch("tiny-cnn", num_classes=0)


def test_pretrained_offline_raises_weights_error(monkeypatch):
    def offline(*_a, **_k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    import torchvision.models._api as tv_api

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline, raising=False)
    with pytest.raises(WeightsError, match="hub/checkpoints"):
        build_arch("alexnet-gap", num_classes=3, pretrained=True)
    with pytest.raises(WeightsError, match="no pretrained"):
        build_arch("tiny-cnn", num_classes=3, pretrained=True)
