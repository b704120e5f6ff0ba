"""The batched box path (largest_boxes, normalize) agrees with the per-map reference on odd maps:
NaN, infinities, non-positive maxima, flat maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camloc.cams.postprocess import normalize
from camloc.localize import boxes_from_map, largest_boxes


def _odd_maps(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(4, 6, 20, 24, generator=g)
    m[0, 0] = 0.0                        # flat zero
    m[0, 1] = -m[0, 1].abs()             # max below 0
    m[1, 0, 3, 3] = float("nan")         # one NaN
    m[1, 1, 0, 0] = float("inf")         # an infinite max
    m[2, 2] = float("nan")               # all NaN
    m[2, 3, 5, 5] = float("-inf")
    m[3] = m[3].relu()
    return m


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_largest_boxes_equals_the_per_map_rule(seed, threshold):
    m = _odd_maps(seed)
    got = largest_boxes(m, threshold)
    want = np.stack([[boxes_from_map(m[i, j].numpy(), threshold)[0] for j in range(m.shape[1])]
                     for i in range(m.shape[0])])
    assert got.shape == (4, 6, 4)
    assert np.array_equal(got, want)
    assert (got[2, 2] == 0).all() and (got[0, 0] == 0).all() and (got[0, 1] == 0).all()


def test_normalize_max_and_minmax_treat_nan_and_bad_maxima_as_documented():
    m = _odd_maps(0)
    out = normalize(m, "max")
    assert (out[2, 2] == 0).all() and (out[1, 0] == 0).all()  # maps holding NaN become zeros
    assert (out[0, 0] == 0).all() and (out[0, 1] == 0).all()  # max not positive: zeros
    assert torch.allclose(out[3, 0], m[3, 0] / m[3, 0].max())
    mm = normalize(m, "minmax")
    assert (mm[2, 2] == 0).all() and (mm[1, 0] == 0).all() and (mm[0, 0] == 0).all()
    ok = m[0, 1]
    assert torch.allclose(mm[0, 1], (ok - ok.min()) / (ok.max() - ok.min()))
    assert not torch.isnan(mm[[0, 3]]).any()  # finite maps
