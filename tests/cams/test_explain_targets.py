"""camloc.explain / explain_batch with target=: the maps and boxes of a Margin or a callable, what
the Explanation reports for them, per-image targets cut across batches, and the mistakes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

import camloc
from camloc.cams.postprocess import normalize, upsample
from camloc.data.images import batch_images
from camloc.errors import ConfigError
from camloc.explain import explain_batch, make_method
from camloc.models.heads import find_gap_head
from camloc.models.loader import CamModel
from camloc.models.spec import ModelSpec, Preprocess
from camloc.targets import ClassTarget, Margin


@pytest.fixture
def model(make_gapnet):
    net = make_gapnet(num_classes=5, channels=6)
    return CamModel(net, ModelSpec("tiny", 5, [f"c{i}" for i in range(5)],
                                   Preprocess(input_size=(32, 32))), find_gap_head(net, (32, 32)))


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (24 + 4 * i, 40, 3), dtype=np.uint8))
            for i in range(n)]


def test_explain_with_a_margin_gives_the_engines_margin_maps(model):
    imgs = _images(3)
    exps = camloc.explain(model, imgs, target=Margin(2), method="gradcam")
    x, _ = batch_images(imgs, model.spec.preprocess)
    out = make_method(model, "gradcam")(x, classes=Margin(2))
    want = normalize(upsample(out.maps, (32, 32), "bicubic"), "max").numpy()
    for i, e in enumerate(exps):
        np.testing.assert_allclose(e.maps, want[i], rtol=1e-5, atol=1e-6)
        assert e.class_ids == [2] and e.class_names == ["c2"]
        assert e.logits == pytest.approx(out.scores[i].tolist(), abs=1e-5)  # the lead, not logit
        assert e.probs == pytest.approx([out.probs[i, 2].item()], abs=1e-6)
        assert e.boxes.shape == (1, 4) and e.extra == {"target": "margin"}
        assert json.loads(json.dumps(e.to_record()))["target"] == "margin"
    # a margin's map differs from the class's own map (it is not the class target renamed)
    [plain] = camloc.explain(model, imgs[:1], classes=[2], method="gradcam")
    assert plain.class_ids == [2] and "target" not in plain.extra
    assert not np.allclose(plain.maps, exps[0].maps)


def test_a_callable_target_reports_no_class(model):
    imgs = _images(2)
    [e, _] = camloc.explain(model, imgs, target=lambda z: z[:, 3] - z[:, 1], method="gradcam")
    assert e.class_ids == [-1] and e.class_names == ["target"] and math.isnan(e.probs[0])
    rec = json.loads(json.dumps(e.to_record(), allow_nan=False))
    assert rec["probs"] == [None] and rec["target"] == "score" and rec["class_ids"] == [-1]
    # the same maps as the margin of 3 against 1, which names its classes
    [m, _] = camloc.explain(model, imgs, target=Margin(3, against=1), method="gradcam")
    np.testing.assert_allclose(e.maps, m.maps, rtol=1e-5, atol=1e-6)
    assert m.class_ids == [3] and e.logits == pytest.approx(m.logits, abs=1e-5)


def test_per_image_targets_are_cut_across_batches(model):
    imgs = _images(5)
    cls = [4, 0, 3, 1, 2]
    one = camloc.explain(model, imgs, target=Margin(cls), method="gradcam", batch_size=5)
    two = camloc.explain(model, imgs, target=Margin(cls), method="gradcam", batch_size=2)
    assert [e.class_ids for e in two] == [[c] for c in cls] == [e.class_ids for e in one]
    for a, b in zip(one, two):
        np.testing.assert_allclose(a.maps, b.maps, rtol=1e-5, atol=1e-6)
    ids = camloc.explain(model, imgs, target=ClassTarget(cls), batch_size=2)
    by_classes = [camloc.explain(model, im, classes=[c])[0] for im, c in zip(imgs, cls)]
    for a, b in zip(ids, by_classes):
        assert a.class_ids == b.class_ids and "target" not in a.extra
        np.testing.assert_allclose(a.maps, b.maps, rtol=1e-5, atol=1e-6)


def test_ints_and_lists_work_as_before_and_mistakes_are_config_errors(model):
    imgs = _images(2)
    [e, _] = camloc.explain(model, imgs, top_k=2)
    assert len(e.class_ids) == 2 and e.extra == {} and not any(map(math.isnan, e.probs))
    [f, _] = camloc.explain(model, imgs, classes=[1, 4])
    assert f.class_ids == [1, 4]
    with pytest.raises(ConfigError, match="target and classes"):
        camloc.explain(model, imgs, classes=[1], target=Margin(1))
    with pytest.raises(ConfigError, match="target: expected a Target"):
        camloc.explain(model, imgs, target=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Margin\(cls\)"):
        camloc.explain(model, imgs, target=Margin(9))
    with pytest.raises(ConfigError, match=r"Margin\(cls\)"):  # 3 classes for 2 images
        camloc.explain(model, imgs, target=Margin([0, 1, 2]), method="gradcam", batch_size=1)
    [g] = explain_batch(model, imgs[:1], target=Margin(1, against=0), method="gradcam")
    assert g.class_ids == [1] and g.extra == {"target": "margin"}
