"""Maps -> masks -> boxes on constructed maps with known components."""

from __future__ import annotations

import numpy as np
import pytest

from camloc.errors import ConfigError
from camloc.localize import (boxes_from_map, component_boxes, largest_box, largest_boxes,
                             threshold_mask)


def test_largest_component_and_all_components():
    m = np.zeros((40, 50), np.float32)
    m[5:15, 10:30] = 1.0  # 200 px
    m[25:30, 40:45] = 0.8  # 25 px
    m[35, 0] = 0.5  # single pixel
    assert largest_box(threshold_mask(m, 0.2)).tolist() == [10, 5, 30, 15]
    boxes, areas = component_boxes(threshold_mask(m, 0.2))
    assert boxes.tolist() == [[10, 5, 30, 15], [40, 25, 45, 30], [0, 35, 1, 36]]
    assert areas.tolist() == [200, 25, 1]
    # threshold is relative to the maximum: 0.6 drops the 0.5 pixel
    assert len(boxes_from_map(m, 0.6, multi=True)) == 2
    assert len(component_boxes(threshold_mask(m, 0.2), min_area=2)[0]) == 2


def test_eight_connectivity_joins_diagonals():
    m = np.zeros((6, 6), np.float32)
    m[1, 1] = m[2, 2] = m[3, 3] = 1
    boxes, areas = component_boxes(threshold_mask(m, 0.5))
    assert boxes.tolist() == [[1, 1, 4, 4]] and areas.tolist() == [3]


def test_strictly_above_threshold_and_degenerate_maps():
    m = np.array([[0.2, 1.0]], np.float32)
    assert threshold_mask(m, 0.2).tolist() == [[False, True]]
    assert not threshold_mask(np.zeros((4, 4)), 0.2).any()
    assert not threshold_mask(np.full((4, 4), np.nan), 0.2).any()
    assert not threshold_mask(-np.ones((4, 4)), 0.2).any()
    assert largest_box(np.zeros((4, 4), bool)).tolist() == [0, 0, 0, 0]
    # a hole does not split a component; a ring's box is its outline
    ring = np.ones((9, 9), np.float32)
    ring[3:6, 3:6] = 0
    assert boxes_from_map(ring, 0.5).tolist() == [[0, 0, 9, 9]]


def test_bad_arguments():
    with pytest.raises(ConfigError):
        threshold_mask(np.zeros((2, 2)), 1.5)
    with pytest.raises(ConfigError):
        threshold_mask(np.zeros((2, 2, 2)), 0.2)


def test_batched_largest_boxes_match_per_map_labelling(rng):
    import torch

    from camloc.cams import upsample

    maps = upsample(torch.from_numpy(rng.normal(size=(6, 3, 7, 7)).astype(np.float32)), (64, 64))
    fast = largest_boxes(maps, 0.4)
    for i in range(6):
        for j in range(3):
            m = maps[i, j].numpy()
            boxes, areas = component_boxes(threshold_mask(m, 0.4))
            expected = boxes[0] if len(boxes) else np.zeros(4)
            np.testing.assert_array_equal(fast[i, j], expected)
    assert largest_boxes(torch.zeros(2, 5, 5), 0.2).tolist() == [[0, 0, 0, 0]] * 2
