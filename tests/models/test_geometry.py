"""Coordinates survive the round trip through resize and centre crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from camloc.data.images import to_tensor
from camloc.errors import ConfigError
from camloc.models.spec import Preprocess


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (227, 227), (1, 1), (300, 17)])
@pytest.mark.parametrize("fit", ["stretch", "crop"])
def test_box_round_trip(size, fit):
    pre = Preprocess(input_size=(224, 224), fit=fit, crop_pct=0.875)
    g = pre.geometry(*size)
    boxes = np.array([[0, 0, size[0], size[1]], [size[0] * 0.25, size[1] * 0.3, size[0] * 0.6,
                                                  size[1] * 0.9]])
    back = g.to_original_boxes(g.to_input_boxes(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-9)


def test_crop_geometry_matches_pixels():
    """A bright square drawn in the original must land where the geometry says in the input."""
    w, h = 400, 300
    arr = np.zeros((h, w, 3), np.uint8)
    arr[100:200, 150:250] = 255
    pre = Preprocess(input_size=(224, 224), fit="crop", crop_pct=0.875, interpolation="nearest",
                     mean=(0, 0, 0), std=(1, 1, 1))
    x, g = to_tensor(Image.fromarray(arr), pre)
    assert x.shape == (3, 224, 224)
    ys, xs = torch.nonzero(x[0] > 0.5, as_tuple=True)
    found = np.array([[xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]])
    expected = g.to_input_boxes([[150, 100, 250, 200]])
    np.testing.assert_allclose(found, expected, atol=1.01)
    np.testing.assert_allclose(g.to_original_boxes(found), [[150, 100, 250, 200]], atol=2.0)


def test_stretch_is_a_plain_scale():
    g = Preprocess(input_size=(224, 224)).geometry(448, 112)
    assert (g.scale_x, g.scale_y, g.offset_x, g.offset_y) == (0.5, 2.0, 0.0, 0.0)


def test_bad_preprocess():
    with pytest.raises(ConfigError):
        Preprocess(fit="squash")
    with pytest.raises(ConfigError):
        Preprocess(crop_pct=0)
