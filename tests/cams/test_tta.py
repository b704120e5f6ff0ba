"""camloc.cams.tta: the TTA wrapper is called like a map method and averages what it should."""

from __future__ import annotations

import pytest
import torch

from camloc.cams import make_method
from camloc.cams.postprocess import normalize, upsample
from camloc.cams.tta import TTA, TTAMethod, parse_tta, tta_maps, with_tta
from camloc.errors import ConfigError


@pytest.fixture(scope="module")
def model():
    import camloc
    from torch import nn

    from camloc.models import GapNet

    torch.manual_seed(0)
    feats = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
    return camloc.wrap(GapNet(feats, nn.Linear(8, 5)), input_size=(32, 32))


def test_parse_and_describe_round_trip():
    assert parse_tta("flip,scales=32:48,logits") == TTA(flip=True, scales=(32, 48), logits=True)
    for text in ("flip", "scales=32:48", "flip,scales=32:48,logits"):
        assert parse_tta(parse_tta(text).describe()) == parse_tta(text)
    assert parse_tta("none") is None and parse_tta(TTA()) is None
    with pytest.raises(ConfigError, match="logits"):
        parse_tta("logits")  # nothing to average
    with pytest.raises(ConfigError, match="unknown item"):
        parse_tta("flip,bogus")
    with pytest.raises(ConfigError, match="no variants"):
        TTAMethod(object(), "none")


def test_one_variant_at_the_input_size_is_the_plain_map(model):
    cam = make_method(model, "cam")
    x = torch.randn(3, 3, 32, 32)
    plain = cam(x, classes=2)
    out = TTAMethod(cam, TTA(scales=(32,)))(x, classes=2)
    assert torch.equal(out.class_ids, plain.class_ids)
    assert torch.allclose(out.logits, plain.logits)
    want = normalize(upsample(plain.maps, (32, 32), "bicubic"), "minmax")
    assert out.maps.shape == (3, 2, 32, 32)
    assert torch.allclose(out.maps, want, atol=1e-6)


def test_flip_tta_is_equivariant_with_chosen_classes(model):
    meth = with_tta(make_method(model, "gradcam"), "flip")
    x = torch.randn(2, 3, 32, 32)
    a = meth(x, classes=[[1], [3]])
    b = meth(torch.flip(x, dims=[-1]), classes=[[1], [3]])
    assert torch.allclose(torch.flip(a.maps, dims=[-1]), b.maps, atol=1e-5)
    assert meth.name == "gradcam" and meth.needs_grad  # the base method's attributes


def test_logits_option_averages_the_variants_and_picks_classes_from_the_mean(model):
    cam = make_method(model, "cam")
    x = torch.randn(4, 3, 32, 32)
    tta = TTA(scales=(32, 48), logits=True)
    out = TTAMethod(cam, tta)(x, classes=2)
    big = torch.nn.functional.interpolate(x, size=(48, 48), mode="bilinear", align_corners=False)
    with torch.no_grad():
        mean = (model.logits(x) + model.logits(big)) / 2
    assert torch.allclose(out.logits, mean, atol=1e-5)
    assert torch.equal(out.class_ids, mean.topk(2, dim=1).indices)
    # without it, the logits are the plain input's (compare's semantics) and tta_maps agrees
    plain = TTAMethod(cam, TTA(scales=(32, 48)))(x, classes=[[0]] * 4)
    assert torch.allclose(plain.logits, model.logits(x).detach(), atol=1e-6)
    lg, maps = tta_maps(cam, x, torch.zeros(4, dtype=torch.long), TTA(scales=(32, 48)))
    assert torch.allclose(maps, plain.maps[:, 0]) and torch.allclose(lg, plain.logits)


def test_scales_without_the_input_size_still_return_the_plain_logits(model):
    cam = make_method(model, "cam")
    x = torch.randn(2, 3, 32, 32)
    out = TTAMethod(cam, "scales=40:48")(x, classes=1)
    assert torch.allclose(out.logits, model.logits(x).detach(), atol=1e-6)
    assert torch.equal(out.class_ids, model.logits(x).topk(1, dim=1).indices)
