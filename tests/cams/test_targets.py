"""Targets (camloc.targets) in the engine: a callable, a Margin and per-image class targets drive
the gradient and perturbation methods exactly as the class ids they stand for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camloc.cams import CAM, METHODS, GradCAM
from camloc.errors import ConfigError
from camloc.models.heads import find_gap_head
from camloc.models.loader import CamModel
from camloc.models.spec import ModelSpec, Preprocess
from camloc.targets import ClassTarget, Margin, ScoreTarget, resolve_targets


def _wrap(net: nn.Module, size=(32, 32)) -> CamModel:
    c = net.classifier.out_features
    return CamModel(net, ModelSpec("tiny", c, [f"c{i}" for i in range(c)], Preprocess(input_size=size)),
                    find_gap_head(net, size))


@pytest.fixture
def model(make_gapnet):
    return _wrap(make_gapnet(num_classes=5, channels=6))


# every method that reads its target's scores: gradients (plain and SmoothGrad) and re-scoring
SCORED = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "smoothgradcam++",
          "scorecam", "ablationcam"]


@pytest.mark.parametrize("name", SCORED)
def test_a_callable_target_gives_the_maps_of_the_class_it_computes(model, name):
    x = torch.randn(3, 3, 32, 32)
    kw = {"smooth": 3} if name == "smoothgradcam++" else {}
    method = METHODS[name](model, **kw)
    by_id = method(x, classes=[3])
    by_fn = method(x, classes=lambda z: z[:, 3])
    torch.testing.assert_close(by_fn.maps, by_id.maps, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_fn.scores, by_id.scores)
    assert by_fn.class_ids.tolist() == [[-1]] * 3  # no class stands for a callable's score


def test_a_callable_with_several_scores_and_per_image_class_targets(model):
    x = torch.randn(4, 3, 32, 32)
    cam = GradCAM(model)
    two = cam(x, classes=lambda z: z[:, [4, 1]])
    torch.testing.assert_close(two.maps, cam(x, classes=[4, 1]).maps, rtol=1e-5, atol=1e-6)
    labels = torch.tensor([2, 0, 4, 1])
    per_image = cam(x, classes=ClassTarget(labels))
    torch.testing.assert_close(per_image.maps, cam(x, classes=labels[:, None]).maps)
    assert per_image.class_ids[:, 0].tolist() == labels.tolist()


def test_margin_maps_are_the_difference_of_the_two_classes_maps(model):
    """Grad-CAM is linear in the score: the map of ``y_c - y_d`` (no ReLU) is map_c - map_d."""
    x = torch.randn(3, 3, 32, 32)
    cam = GradCAM(model, relu=False)
    both = cam(x, classes=[2, 0])
    vs0 = cam(x, classes=Margin(2, against=0))
    torch.testing.assert_close(vs0.maps[:, 0], both.maps[:, 0] - both.maps[:, 1], rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(vs0.scores[:, 0], both.logits[:, 2] - both.logits[:, 0])
    assert vs0.class_ids.tolist() == [[2]] * 3
    # against the best other class of each image, for per-image classes
    cls = torch.tensor([1, 3, 4])
    lead = cam(x, classes=Margin(cls))
    logits = lead.logits
    rival = logits.scatter(1, cls[:, None], float("-inf")).argmax(1)
    pair = cam(x, classes=torch.stack([cls, rival], 1))
    torch.testing.assert_close(lead.maps[:, 0], pair.maps[:, 0] - pair.maps[:, 1], rtol=1e-4,
                               atol=1e-5)
    expected = logits.gather(1, cls[:, None]) - logits.gather(1, rival[:, None])
    torch.testing.assert_close(lead.scores, expected)


def test_margin_drives_perturbation_methods_per_image(model):
    """Ablation-CAM's weights are relative drops of the target score: a margin against a fixed
    class on one image equals the same margin given per image."""
    x = torch.randn(2, 3, 32, 32)
    method = METHODS["ablationcam"](model, relu=False)
    shared = method(x, classes=Margin(1, against=3))
    per_image = method(x, classes=Margin([1, 1], against=[3, 3]))
    torch.testing.assert_close(per_image.maps, shared.maps)
    assert shared.maps.abs().sum() > 0


def test_exact_cam_and_bad_targets_are_refused_with_the_reason(model):
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ConfigError, match="exact CAM"):
        CAM(model)(x, classes=lambda z: z[:, 0])
    with pytest.raises(ConfigError, match=r"expected float scores of shape \(2,\)"):
        GradCAM(model)(x, classes=lambda z: z.argmax(1))
    with pytest.raises(ConfigError, match="Margin\\(cls\\): expected one class or 2"):
        GradCAM(model)(x, classes=Margin([0, 1, 2]))
    with pytest.raises(ConfigError, match="ids must be in"):
        GradCAM(model)(x, classes=ClassTarget([0, 9]))
    with pytest.raises(ConfigError, match="do not depend"):
        GradCAM(model)(x, classes=lambda z: z[:, 0].detach())


def test_resolve_targets_keeps_every_class_selection():
    logits = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    assert resolve_targets(2, logits).class_ids.tolist() == [[1, 2], [0, 2]]
    assert resolve_targets("all", logits).class_ids.tolist() == [[0, 1, 2]] * 2
    assert resolve_targets([[1], [0]], logits).class_ids.tolist() == [[1], [0]]
    fn = resolve_targets(lambda z: z.max(1).values, logits)
    assert isinstance(fn, ScoreTarget) and fn.k == 1
    assert fn.scores(logits)[:, 0].tolist() == pytest.approx([0.9, 0.7])
