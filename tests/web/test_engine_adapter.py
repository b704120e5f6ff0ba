"""The web server's engine adapter: methods and their metadata are discovered, not hard-coded;
layer choice follows what the methods accept; a model without a GAP head loses exact CAM and the
point lookup, with a clear reason."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch

import camloc.cams as cams
from camloc.errors import ConfigError
from camloc.web.engine import ExplainJob, WebEngine


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    import camloc

    return camloc.load_model(str(tiny_model_dir), device="cpu")


@dataclass(frozen=True)
class Info:
    name: str
    family: str
    summary: str
    cost: str
    needs_head: bool = False


class LayeredBase(cams.GradCAM):
    """The next engine's shape: the base takes ``layer``; subclasses pass ``*args, **kwargs``."""

    def __init__(self, model, layer=None):
        super().__init__(model)
        self.layer = layer


class LayeredGradCAM(LayeredBase):
    info = Info("layered", "gradient", "Grad-CAM on a chosen layer", "1 forward + k backward")

    def __init__(self, *args, eps: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps


class SlowOne(cams.CAM):
    info = Info("slowone", "perturbation", "one forward per channel", "1 + K forward")


class FixedLayer:
    """A method that always uses the model's own features: no layer argument."""

    needs_grad = False

    def __init__(self, model):
        self.model = model


def test_methods_come_from_the_registry_with_their_metadata(tiny, monkeypatch):
    monkeypatch.setattr(cams, "METHODS", {**cams.METHODS, "layered": LayeredGradCAM, "slowone": SlowOne,
                                          "fixed": FixedLayer})
    eng = WebEngine(tiny)
    meta = {m["name"]: m for m in eng.methods()}
    assert list(meta) == list(cams.METHODS)
    assert meta["layered"]["family"] == "gradient" and meta["layered"]["cost"] == "1 forward + k backward"
    assert meta["layered"]["description"] == "Grad-CAM on a chosen layer"
    assert meta["layered"]["layer_choice"] and not meta["fixed"]["layer_choice"]
    assert meta["fixed"]["description"].startswith("A method that always uses")
    assert meta["slowone"]["slow"] and not meta["layered"]["slow"]
    assert meta["gradcam"]["needs_grad"] and not meta["cam"]["needs_grad"]
    layers = eng.layers()
    assert layers[0]["name"] == "" and len(layers) > 1  # a method takes a layer: spatial modules listed
    assert all(len(entry["shape"]) == 3 for entry in layers[1:])
    some = layers[1]["name"]
    eng.check("layered", some)
    with pytest.raises(ConfigError, match="takes no layer"):
        eng.check("fixed", some)
    with pytest.raises(ConfigError, match="not a layer"):
        eng.check("layered", "no.such.layer")
    with pytest.raises(ConfigError, match="expected one of"):
        eng.check("nope")


def test_layers_offered_only_when_a_method_takes_one(tiny):
    eng = WebEngine(tiny)
    layers = eng.layers()
    assert layers[0]["name"] == ""
    assert (len(layers) > 1) == any(m["layer_choice"] for m in eng.methods())


def test_a_model_without_gap_head(tiny):
    headless = replace(tiny, head=None)
    eng = WebEngine(headless)
    meta = {m["name"]: m for m in eng.methods()}
    assert meta["cam"]["available"] is False  # only exact CAM needs the head
    with pytest.raises(ConfigError, match="exact CAM needs global average pooling"):
        eng.check("cam")  # the engine's own reason, naming the methods that work
    assert "gradcam" in meta["cam"]["reason"]
    eng.check("gradcam")  # every other method works
    assert eng.has_exact_cam is False
    with pytest.raises(ConfigError, match="exact CAM"):
        eng.all_class_maps([])


def test_mixed_selections_in_one_batch(tiny):
    """Top-k and named classes in one call: each image gets exactly what it asked for."""
    from PIL import Image

    from camloc.explain import explain

    imgs = [Image.new("RGB", (40 + 10 * i, 30), (30 * i, 90, 200 - 20 * i)) for i in range(4)]
    jobs = [ExplainJob(imgs[0], 3), ExplainJob(imgs[1], [5, 1]), ExplainJob(imgs[2], 1, all_maps=True),
            ExplainJob(imgs[3], [2])]
    res = WebEngine(tiny).explain("cam", None, jobs)
    for job, r in zip(jobs, res):
        kw = {"top_k": job.selection} if isinstance(job.selection, int) else {"classes": job.selection}
        [e] = explain(tiny, [job.image], **kw)
        assert r.class_ids == e.class_ids
        assert torch.allclose(torch.from_numpy(r.maps), torch.from_numpy(e.maps), atol=1e-5)
        assert (r.all_maps is not None) == job.all_maps


def test_any_layer_the_engine_resolves(tiny):
    """Every engine method takes a layer: the offered list holds the model's blocks with their map
    shapes; a name that is not offered but exists is accepted, a wrong one is refused by name."""
    from PIL import Image

    eng = WebEngine(tiny)
    names = [entry["name"] for entry in eng.layers()]
    assert names[0] == "" and "features.block3" in names
    shape = next(e["shape"] for e in eng.layers() if e["name"] == "features.block3")
    assert shape[1:] == [8, 8]  # 64 px input, three 2x poolings
    [r] = eng.explain("gradcam", "features.block3", [ExplainJob(Image.new("RGB", (50, 40)), 2)])
    assert r.layers == ["features.block3"] and r.method == "gradcam" and r.maps.shape == (2, 64, 64)
    [d] = eng.explain("eigencam", None, [ExplainJob(Image.new("RGB", (50, 40)), 1)])
    assert d.layers == list(tiny.layers)
    eng.check("hirescam", "features.block2.0")  # not in the list, but a layer of the model
    with pytest.raises(ConfigError, match="'features.block9'"):
        eng.check("gradcam", "features.block9")
    with pytest.raises(ConfigError, match="exact CAM is defined only at the layer"):
        eng.check("cam", "features.block3")
