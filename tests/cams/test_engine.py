"""The CAM engine: exactness, class selection, batching, hooks and model state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camloc.cams import CAM, GradCAM, normalize, select_classes, upsample
from camloc.errors import ConfigError
from camloc.models.heads import find_gap_head
from camloc.models.registry import CamModel
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


@pytest.mark.parametrize("bad", [0, -1, "top0", "bogus", [7], [[1, 2]], True])
def test_bad_class_selection(make_gapnet, bad):
    logits = torch.randn(2, 6)
    with pytest.raises(ConfigError):
        select_classes(logits, bad)


def test_gradcam_is_proportional_to_cam_on_gap_linear(make_gapnet):
    net = make_gapnet(num_classes=5)
    for p in net.parameters():
        p.grad = None
    model = _wrap(net)
    x = torch.randn(2, 3, 32, 32)
    g = GradCAM(model)(x, classes=3)
    c = CAM(model)(x, classes=g.class_ids)
    hw = c.maps.shape[-1] * c.maps.shape[-2]
    torch.testing.assert_close(g.maps * hw, c.maps, rtol=1e-4, atol=1e-5)
    assert all(p.grad is None for p in net.parameters()), "gradients must not touch .grad"


def test_hooks_removed_and_flags_restored_after_exception():
    from torchvision.models import resnet18

    net = resnet18(num_classes=3)
    model = CamModel(net, ModelSpec("r", 3, ["a", "b", "c"], Preprocess(input_size=(64, 64))),
                     find_gap_head(net, (64, 64)))
    assert model.head.method == "hook"
    net.train()
    net.layer2.eval()

    def count_hooks() -> int:
        return sum(len(m._forward_hooks) for m in net.modules())

    before = count_hooks()
    with pytest.raises(RuntimeError):
        CAM(model)(torch.randn(2, 5, 64, 64))  # wrong channel count -> raises inside forward
    assert count_hooks() == before == 0
    assert net.training and not net.layer2.training and net.layer1.training
    CAM(model)(torch.randn(1, 3, 64, 64))
    assert count_hooks() == 0 and net.training


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
