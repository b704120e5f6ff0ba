"""The offline default model on real photos."""

from __future__ import annotations

import numpy as np
import pytest

import camloc

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
# Hand-annotated box of the cat in scikit-image's `chelsea` (451 x 300): the head and chest fill
# the frame from the left edge to the right ear; the right margin is background.
CHELSEA_CAT_BOX = np.array([0.0, 0.0, 400.0, 300.0])


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_chelsea_is_a_cat_and_the_box_covers_it(default_model, samples_dir):
    [exp] = camloc.explain(default_model, samples_dir / "chelsea.jpg", top_k=5)
    assert exp.class_ids[0] == 285 and exp.class_names[0] == "Egyptian cat"
    assert exp.probs[0] == pytest.approx(0.77, abs=0.05)
    assert _iou(exp.boxes[0], CHELSEA_CAT_BOX) >= 0.5
    # the map's peak lies inside the cat box
    m = exp.map_in_original(0)
    y, x = np.unravel_index(np.argmax(m), m.shape)
    assert 0 <= x <= 400

# The dev-set top-1 (81.80) is asserted exactly by tests/evaluate/test_evaluate_devset.py, which
# runs the same model over the same 511 photos.
