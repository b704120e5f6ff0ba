"""camloc.explain / explain_batch with method= and layer=: recorded in Explanation and to_record()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camloc
from camloc.errors import ConfigError, UnsupportedHeadError


def test_explain_records_method_and_layer(default_model, samples_dir):
    [e] = camloc.explain(default_model, samples_dir / "chelsea.jpg", top_k=2, method="gradcam++",
                         layer="blocks.5")
    assert e.method == "gradcam++" and e.layers == ["blocks.5"]
    rec = e.to_record()
    assert rec["method"] == "gradcam++" and rec["layers"] == ["blocks.5"]
    assert e.maps.shape == (2, 224, 224) and np.isfinite(e.maps).all() and e.maps.max() == 1.0
    [d] = camloc.explain(default_model, samples_dir / "chelsea.jpg", top_k=1)
    assert d.method == "cam" and d.layers == ["bn2"] and d.to_record()["layers"] == ["bn2"]
    assert d.class_ids[0] == e.class_ids[0] == 285


def test_explain_methods_options_and_errors(samples_dir):
    torch.manual_seed(0)
    model = camloc.wrap(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Flatten(), torch.nn.Linear(4 * 32 * 32, 3)),
                        input_size=(32, 32))
    with pytest.raises(UnsupportedHeadError, match="gradcam"):
        camloc.explain(model, samples_dir / "chelsea.jpg")
    [e] = camloc.explain(model, samples_dir / "chelsea.jpg", top_k=1, method="smoothgradcam++",
                         smooth=2, batch_size=1)
    assert e.method == "smoothgradcam++" and e.layers == ["1"]
    with pytest.raises(ConfigError, match="expected one of"):
        camloc.explain(model, samples_dir / "chelsea.jpg", method="bogus")
