"""The engine: exactness, class selection, batching, hooks, autograd hygiene and model state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camloc.cams import (CAM, METHODS, GradCAM, HiResCAM, make_method, normalize, select_classes,
                         upsample)
from camloc.errors import ConfigError
from camloc.models.heads import find_gap_head
from camloc.models.loader import CamModel
from camloc.models.spec import ModelSpec, Preprocess


def _wrap(net: nn.Module, size=(32, 32)) -> CamModel:
    spec = ModelSpec("tiny", net.classifier.out_features,
                     [f"c{i}" for i in range(net.classifier.out_features)],
                     Preprocess(input_size=size))
    return CamModel(net, spec, find_gap_head(net, size))


def test_cam_equals_explicit_weighted_sum(make_gapnet):
    net = make_gapnet(num_classes=6, channels=5)
    model = _wrap(net)
    x = torch.randn(3, 3, 32, 32)
    out = CAM(model)(x, classes=[0, 2, 5])
    with torch.no_grad():
        f = net.features(x)
    w = net.classifier.weight
    # independent, loop-based definition: M_c(x, y) = sum_k w[c, k] f_k(x, y)
    for n in range(3):
        for j, c in enumerate([0, 2, 5]):
            explicit = sum(w[c, k] * f[n, k] for k in range(f.shape[1]))
            torch.testing.assert_close(out.maps[n, j], explicit, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.maps.mean((2, 3)) + out.bias, out.logits[:, [0, 2, 5]],
                               rtol=1e-5, atol=1e-5)
    assert out.method == "cam" and out.layers == ["features"]


def test_all_classes_topk_and_per_image_selection(make_gapnet):
    model = _wrap(make_gapnet(num_classes=6))
    x = torch.randn(4, 3, 32, 32)
    all_out = CAM(model)(x, classes="all")
    assert all_out.maps.shape[:2] == (4, 6)
    top = CAM(model)(x, classes=2)
    assert torch.equal(top.class_ids, all_out.logits.topk(2, 1).indices)
    for n in range(4):
        for j in range(2):
            torch.testing.assert_close(top.maps[n, j], all_out.maps[n, top.class_ids[n, j]])
    per_image = torch.tensor([[1], [3], [0], [5]])
    sel = CAM(model)(x, classes=per_image)
    torch.testing.assert_close(sel.maps[:, 0], all_out.maps[torch.arange(4), per_image[:, 0]])
    # batching does not change results
    single = torch.cat([CAM(model)(x[i:i + 1], classes="all").maps for i in range(4)])
    torch.testing.assert_close(single, all_out.maps, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1, "top0", "bogus", [7], [[1, 2]], True, [["a"]]])
def test_bad_class_selection(bad):
    logits = torch.randn(2, 6)
    with pytest.raises(ConfigError):
        select_classes(logits, bad)


def test_gradient_methods_on_a_gap_network_relate_to_cam_exactly(make_gapnet):
    """On GAP -> linear, dy_c/dA = W_c / (h w) everywhere: Grad-CAM (before its ReLU) and HiResCAM
    both equal CAM / (h w) (the bias aside)."""
    net = make_gapnet(num_classes=5)
    for p in net.parameters():
        p.grad = None
    model = _wrap(net)
    x = torch.randn(2, 3, 32, 32)
    c = CAM(model)(x, classes=3)
    hw = c.maps.shape[-1] * c.maps.shape[-2]
    g = GradCAM(model, relu=False)(x, classes=c.class_ids)
    h = HiResCAM(model)(x, classes=c.class_ids)
    torch.testing.assert_close(g.maps * hw, c.maps, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h.maps * hw, c.maps, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(GradCAM(model)(x, classes=c.class_ids).maps, (c.maps / hw).clamp_min(0),
                               rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in net.parameters()), "gradients must not touch .grad"


def _count_hooks(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in net.modules())


@pytest.mark.parametrize("method", list(METHODS))
def test_hooks_removed_flags_restored_and_grad_untouched_for_every_method(method):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=3)
    model = CamModel(net, ModelSpec("r", 3, ["a", "b", "c"], Preprocess(input_size=(64, 64))),
                     find_gap_head(net, (64, 64)))
    net.train()
    net.layer2.eval()
    layer = {"cam": "layer4", "scorecam": "layer1", "ablationcam": "layer1"}.get(method, "layer3.1")
    engine = make_method(model, method, layer=layer, batch_size=64)  # small layers: quick perturbations
    before = _count_hooks(net)
    with pytest.raises(RuntimeError):
        engine(torch.randn(2, 5, 32, 32))  # wrong channel count -> raises inside forward
    assert _count_hooks(net) == before == 0
    assert net.training and not net.layer2.training and net.layer1.training
    grad_mode = torch.is_grad_enabled()
    out = engine(torch.randn(2, 3, 32, 32), classes=2)
    assert torch.is_grad_enabled() == grad_mode
    assert _count_hooks(net) == 0 and net.training and not net.layer2.training
    assert all(p.grad is None for p in net.parameters())
    assert torch.isfinite(out.maps).all() and not out.maps.requires_grad
    assert out.maps.shape[:2] == (2, 2) and out.method == method


def test_gradients_flow_only_from_the_target_layer_up():
    from torchvision.models import resnet18

    net = resnet18(num_classes=4)
    model = CamModel(net, ModelSpec("r", 4, list("abcd"), Preprocess(input_size=(64, 64))),
                     find_gap_head(net, (64, 64)))
    seen: dict[str, bool] = {}

    def record(name):
        def hook(_m, _i, out):
            seen[name] = out.requires_grad
        return hook

    handles = [net.layer2.register_forward_hook(record("layer2")),
               net.layer3.register_forward_hook(record("layer3")),
               net.fc.register_forward_hook(record("fc"))]
    try:
        GradCAM(model, layer="layer3")(torch.randn(1, 3, 32, 32), classes=1)
    finally:
        for h in handles:
            h.remove()
    # below the target layer no graph was built; from it upward there is one
    assert seen == {"layer2": False, "layer3": False, "fc": True}


def test_gradient_methods_work_under_inference_mode_and_no_grad(make_gapnet):
    model = _wrap(make_gapnet(num_classes=4))
    x = torch.randn(2, 3, 32, 32)
    ref = GradCAM(model)(x, classes=1).maps
    with torch.inference_mode():
        inf = GradCAM(model)(torch.randn(2, 3, 32, 32).copy_(x), classes=1).maps
    with torch.no_grad():
        nog = GradCAM(model)(x, classes=1).maps
    torch.testing.assert_close(inf, ref)
    torch.testing.assert_close(nog, ref)


def test_inplace_relu_after_the_target_layer_does_not_change_the_features():
    """VGG's conv layers are followed by ReLU(inplace=True): the tapped output must be the conv's."""
    from camloc.models.loader import wrap

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(6, 6, 3, padding=1),
                        nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(6 * 8 * 8, 3))
    model = wrap(net, input_size=(8, 8))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        conv = net[2](net[1](net[0](x)))  # the pre-ReLU output of layer "2"
    out = make_method(model, "eigencam", layer="2")(x, classes=1)
    from camloc.cams.projection import first_component_projection

    torch.testing.assert_close(out.maps[:, 0], first_component_projection(conv))
    assert float(conv.min()) < 0  # the comparison would be vacuous on non-negative maps
    g = GradCAM(model, layer="2", relu=False)(x, classes=[[0], [2]])
    assert torch.isfinite(g.maps).all()


def test_layer_fusion_is_the_mean_of_minmax_maps_at_the_largest_grid():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=4)
    model = CamModel(net, ModelSpec("r", 4, list("abcd"), Preprocess(input_size=(64, 64))),
                     find_gap_head(net, (64, 64)))
    x = torch.randn(2, 3, 64, 64)
    a = GradCAM(model, layer="layer3")(x, classes=[[1], [2]]).maps
    b = GradCAM(model, layer="layer4")(x, classes=[[1], [2]]).maps
    fused = GradCAM(model, layer=["layer3", "layer4"])(x, classes=[[1], [2]])
    expected = (normalize(a, "minmax") + upsample(normalize(b, "minmax"), a.shape[-2:], "bilinear")) / 2
    torch.testing.assert_close(fused.maps, expected)
    assert fused.layers == ["layer3", "layer4"]


def test_make_method_errors(make_gapnet):
    model = _wrap(make_gapnet())
    with pytest.raises(ConfigError, match="expected one of"):
        make_method(model, "nosuchcam")
    with pytest.raises(ConfigError, match="unexpected keyword|eps"):
        make_method(model, "gradcam", eps=1.0)
    with pytest.raises(ConfigError, match="only gradient methods"):
        make_method(model, "scorecam", smooth=4)
    with pytest.raises(ConfigError, match="batch_size"):
        make_method(model, "scorecam", batch_size=0)
    with pytest.raises(ConfigError, match="no such layer"):
        make_method(model, "gradcam", layer="nope")
    with pytest.raises(ConfigError, match="defined only at the layer"):
        make_method(model, "cam", layer="features.0")
    assert make_method(model, "GradCAM++").name == "gradcam++"


def test_no_autograd_graph_for_exact_cam(make_gapnet):
    out = CAM(_wrap(make_gapnet()))(torch.randn(1, 3, 32, 32), classes="all")
    assert not out.maps.requires_grad and not out.logits.requires_grad


def test_normalize_and_upsample():
    m = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    torch.testing.assert_close(normalize(m, "max"), m / 4)
    torch.testing.assert_close(normalize(m, "minmax"), m / 4)
    torch.testing.assert_close(normalize(m - 1, "minmax"), m / 4)
    const = torch.ones(1, 1, 3, 3)
    assert normalize(const, "minmax").abs().sum() == 0
    nan = torch.full((1, 1, 2, 2), float("nan"))
    assert normalize(nan, "max").abs().sum() == 0 and normalize(nan, "minmax").abs().sum() == 0
    assert normalize(-const, "max").abs().sum() == 0
    with pytest.raises(ConfigError):
        normalize(m, "softmax")
    up = upsample(torch.randn(2, 3, 7, 7), (224, 224))
    assert up.shape == (2, 3, 224, 224)
    lin = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(upsample(lin, (20, 21), "bilinear"),
                               torch.nn.functional.interpolate(lin, size=(20, 21), mode="bilinear",
                                                               align_corners=False))
