"""evaluate's ground-truth maps take a target (camloc.targets) as well as the labels."""

from __future__ import annotations

import numpy as np
import torch

from camloc.cams import GradCAM
from camloc.evaluation.evaluate import gt_class_maps
from camloc.models.heads import find_gap_head
from camloc.models.loader import CamModel
from camloc.models.spec import ModelSpec, Preprocess
from camloc.targets import ClassTarget, Margin


def test_gt_class_maps_of_labels_a_class_target_and_a_margin(make_gapnet):
    net = make_gapnet(num_classes=4, channels=6)
    model = CamModel(net, ModelSpec("tiny", 4, list("abcd"), Preprocess(input_size=(32, 32))),
                     find_gap_head(net, (32, 32)))
    engine = GradCAM(model, relu=False)
    x = torch.randn(3, 3, 32, 32)
    labels, rivals = torch.tensor([1, 3, 0]), torch.tensor([0, 0, 2])
    logits, maps = gt_class_maps(engine, x, labels)
    _, same = gt_class_maps(engine, x, ClassTarget(labels))
    np.testing.assert_array_equal(same, maps)
    _, rival_maps = gt_class_maps(engine, x, rivals)
    _, margin = gt_class_maps(engine, x, Margin(labels, against=rivals))
    np.testing.assert_allclose(margin, maps - rival_maps, rtol=1e-4, atol=1e-5)
    _, fixed = gt_class_maps(engine, x, lambda z: z[:, 2])  # a callable: one score for every image
    _, twos = gt_class_maps(engine, x, torch.tensor([2, 2, 2]))
    np.testing.assert_allclose(fixed, twos, rtol=1e-5, atol=1e-6)
    assert logits.shape == (3, 4)
