"""GAP head detection: found and verified on the families that have one, refused elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camloc.errors import CamlocError, ConfigError, UnsupportedHeadError, WeightsError
from camloc.models import GapNet, find_gap_head
from camloc.models.loader import CamModel, load_model, load_state_dict_file


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "mobilenet_v2", "efficientnet_b0",
                                  "convnext_tiny", "googlenet", "timm:resnet18"])
def test_gap_head_found_and_exact(name):
    model = load_model(name, weights=None, num_classes=7 if not name.startswith("timm") else None)
    assert isinstance(model, CamModel)
    x = torch.randn(2, 3, 224, 224)
    from camloc.cams import CAM

    out = CAM(model)(x, classes="all")
    # the identity that defines exact CAM: class score == mean of its map + bias
    torch.testing.assert_close(out.maps.mean((2, 3)) + out.bias, out.logits, rtol=1e-4, atol=1e-4)
    assert out.maps.shape[-1] > 1


@pytest.mark.parametrize("name", ["vgg16", "alexnet", "mobilenet_v3_small", "timm:vit_tiny_patch16_224"])
def test_non_gap_heads_load_exact_cam_refuses_and_gradcam_works(name):
    from camloc.cams import CAM, GradCAM

    torch.manual_seed(0)  # random weights and input: the same ones whatever ran before
    model = load_model(name, weights=None)
    assert model.head is None and model.head_reason
    with pytest.raises(UnsupportedHeadError) as err:
        CAM(model)
    msg = str(err.value)
    assert "global average pool" in msg and "camloc probe" in msg
    assert "Methods that work on it: gradcam, gradcam++" in msg
    # alexnet's features are 1 x 1 at 64 px (a single cell Grad-CAM's ReLU may zero): 128 px
    size = {"timm:vit_tiny_patch16_224": 224, "alexnet": 128}.get(name, 64)
    out = GradCAM(model)(torch.randn(1, 3, size, size), classes=1)
    assert out.layers == model.layers and torch.isfinite(out.maps).all() and float(out.maps.max()) > 0


def test_weights_file_roundtrip_and_mismatch(tmp_path):
    m = load_model("resnet18", weights=None, num_classes=5)
    sd = {k: v.clone() for k, v in m.module.state_dict().items()}
    torch.save(sd, tmp_path / "w.pth")
    m2 = load_model("resnet18", weights=str(tmp_path / "w.pth"), num_classes=5)
    for k, v in m2.module.state_dict().items():
        torch.testing.assert_close(v, sd[k])
    with pytest.raises(WeightsError, match="do not fit"):
        load_model("resnet18", weights=str(tmp_path / "w.pth"), num_classes=9)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth"):
        load_state_dict_file(tmp_path / "junk.pth")


def test_offline_download_gives_clear_error(monkeypatch):
    import torch.hub

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsError) as err:
        load_model("resnet18", weights="DEFAULT")
    assert "--weights PATH" in str(err.value) or "weights=" in str(err.value)


def test_unknown_model_and_device():
    with pytest.raises(ConfigError, match="not a torchvision or timm"):
        load_model("no_such_model_xyz", weights=None)
    with pytest.raises(CamlocError):
        load_model("resnet18", weights=None, device="cuda:7" if not torch.cuda.is_available() else "nonsense")


def test_default_model_offline_spec(default_model):
    spec = default_model.spec
    assert spec.num_classes == 1000 and len(spec.class_names) == 1000
    assert spec.class_names[285] == "Egyptian cat"
    assert spec.preprocess.mean == (0.5, 0.5, 0.5) and spec.preprocess.interpolation == "bicubic"
    assert spec.preprocess.input_size == (224, 224)
    assert default_model.head.num_channels == 1280


def test_find_gap_head_on_gapnet_avg_and_max(make_gapnet):
    net = make_gapnet()
    head = find_gap_head(net, (32, 32))
    assert head.method == "gapnet" and head.pool == "avg"
    net.pool = "max"
    assert find_gap_head(net, (32, 32)).pool == "max"
    # a head that is not linear in pooled features is refused
    bad = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4),
                        nn.Tanh(), nn.Linear(4, 3))
    with pytest.raises(UnsupportedHeadError, match="Sequential"):
        find_gap_head(bad, (32, 32))
    assert isinstance(net, GapNet)


@pytest.mark.slow
@pytest.mark.parametrize("name,layer,layout", [
    ("swin_t", "permute", "nchw"),                                  # norm -> permute -> avgpool
    ("timm:swin_tiny_patch4_window7_224", "norm", "nhwc"),          # timm channels-last features
    ("timm:convnext_tiny", "stages", "nchw"),                       # LayerNorm2d folded after pooling
    ("squeezenet1_1", "classifier.2", "nchw"),                      # 1x1-conv classifier -> GAP
])
def test_gap_head_found_on_channels_last_token_and_conv_classifier_models(name, layer, layout):
    from camloc.cams import CAM

    model = load_model(name, weights=None)
    assert model.head is not None and model.head.feature_name == layer
    assert model.head.layout.kind == layout and model.layers == [layer]
    x = torch.randn(2, 3, 224, 224)
    out = CAM(model)(x, classes=[[1, 5], [7, 2]])
    torch.testing.assert_close(out.maps.mean((2, 3)) + out.bias, out.scores, rtol=1e-4, atol=1e-4)
