"""Target layers: names, modules, lists; layouts (maps, channels-last, tokens); automatic choice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camloc
from camloc.errors import ConfigError, ModelError
from camloc.models.layers import LayerTap, MapLayout, infer_layout, resolve_layers, token_grid


def tiny_vit(**kw):
    import timm

    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=5)
    args.update(kw)
    return timm.create_model("vit_tiny_patch16_224", **args)


def test_resolve_by_name_module_list_and_negative_index():
    from torchvision.models import resnet18

    net = resnet18()
    assert [n for n, _ in resolve_layers(net, "layer4")] == ["layer4"]
    assert [n for n, _ in resolve_layers(net, net.layer3[1].conv2)] == ["layer3.1.conv2"]
    assert [n for n, _ in resolve_layers(net, ["layer3", "layer4.-1", "layer4.1"])] == ["layer3", "layer4.1"]
    with pytest.raises(ConfigError, match="did you mean 'layer4'"):
        resolve_layers(net, "layer_4")
    with pytest.raises(ConfigError, match="not part of the model"):
        resolve_layers(net, nn.Conv2d(1, 1, 1))
    with pytest.raises(ConfigError, match="empty list"):
        resolve_layers(net, [])
    with pytest.raises(ConfigError, match="expected a layer name"):
        resolve_layers(net, [3.5])


@pytest.mark.parametrize("shape,size,expected", [
    ((2, 512, 7, 7), (224, 224), MapLayout("nchw")),
    ((2, 7, 7, 768), (224, 224), MapLayout("nhwc")),
    ((2, 768, 7, 10), (224, 320), MapLayout("nchw")),
    ((2, 7, 10, 768), (224, 320), MapLayout("nhwc")),
    ((2, 197, 192), (224, 224), MapLayout("tokens", 1)),
    ((2, 198, 192), (224, 224), MapLayout("tokens", 2)),   # DeiT: class + distillation tokens
    ((2, 196, 192), (224, 224), MapLayout("tokens", 0)),   # Swin-style tokens, no prefix
    ((2, 281, 192), (224, 320), MapLayout("tokens", 1)),   # 14 x 20 patches
    ((2, 512), (224, 224), None),
    ((2, 1000, 3), (224, 224), None),
])
def test_infer_layout(shape, size, expected):
    assert infer_layout(shape, size) == expected


def test_declared_prefix_wins_and_tokens_map_to_the_grid():
    t = torch.arange(2 * 21 * 3, dtype=torch.float32).view(2, 21, 3)  # 5 prefix + 16 patches
    assert infer_layout(t.shape, (32, 32), prefix=5) == MapLayout("tokens", 5)
    m = MapLayout("tokens", 5).to_map(t, (32, 32))
    assert m.shape == (2, 3, 4, 4)
    # patch (row 1, col 2) is token 5 + 1 * 4 + 2; channels come first
    torch.testing.assert_close(m[1, :, 1, 2], t[1, 5 + 6])
    assert token_grid(16, (32, 32)) == (4, 4)


def test_a_shape_that_is_not_a_map_names_the_layer_and_shape():
    tap = LayerTap("head.fc", nn.Identity())
    with pytest.raises(ModelError, match=r"layer 'head.fc' outputs shape \(2, 10\)"):
        tap.to_map(torch.zeros(2, 10), (224, 224))
    odd = LayerTap("blocks.3", nn.Identity())
    with pytest.raises(ModelError, match=r"'blocks.3' outputs shape \(2, 13, 8\)"):
        odd.to_map(torch.zeros(2, 13, 8), (224, 224))
    bad = LayerTap("x", nn.Identity(), reshape=lambda t: t.flatten(1))
    with pytest.raises(ModelError, match="reshape= must return"):
        bad.to_map(torch.zeros(2, 3, 4, 4), (32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("name,layer", [
    ("resnet18", "layer4"), ("vgg16", "features"), ("mobilenet_v3_large", "features"),
    ("convnext_tiny", "features"), ("densenet121", "features"),
])
def test_automatic_layer_per_family(name, layer):
    model = camloc.load_model(name, weights=None, num_classes=10)
    assert model.layers == [layer]


def test_automatic_layer_for_transformers():
    assert camloc.wrap(tiny_vit(), input_size=(32, 32)).layers == ["blocks.1.norm1"]
    with_regs = camloc.wrap(tiny_vit(reg_tokens=4), input_size=(32, 32))
    assert with_regs.layers == ["blocks.1.norm1"] and with_regs.taps()[0].prefix == 5
    pooled = camloc.wrap(tiny_vit(global_pool="avg"), input_size=(32, 32))
    assert pooled.head is not None and pooled.layers == ["blocks"]

    class Generic(nn.Module):  # no family attributes: found by the dependency search
        def __init__(self):
            super().__init__()
            self.v = tiny_vit()

        def forward(self, x):
            return {"logits": self.v(x)}

    generic = camloc.wrap(Generic(), input_size=(32, 32), output="logits")
    assert generic.layers == ["v.blocks.1.norm1"]


def test_custom_reshape_equals_the_builtin_token_layout():
    from camloc.cams import GradCAM

    model = camloc.wrap(tiny_vit(), input_size=(32, 32))
    x = torch.randn(2, 3, 32, 32)

    def reshape(t):
        return t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    a = GradCAM(model)(x, classes=[[0], [3]])
    b = GradCAM(model, reshape=reshape)(x, classes=[[0], [3]])
    torch.testing.assert_close(a.maps, b.maps)
    assert float(a.maps.abs().max()) > 0
