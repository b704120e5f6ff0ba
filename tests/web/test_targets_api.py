"""/api/explain with target='margin:CLASS[:OTHER]': the maps, classes and boxes of
camloc.explain(..., target=Margin(...)); every mistake is a 400 naming the target field."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from camloc.targets import Margin
from camloc.web.app import ServerSettings, create_app
from camloc.web.engine import WebEngine
from camloc.web.uploads import UploadLimits


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    import camloc

    return WebEngine(camloc.load_model(str(tiny_model_dir), device="cpu"))


@pytest.fixture(scope="module")
def client(engine):
    from fastapi.testclient import TestClient

    settings = ServerSettings(limits=UploadLimits(max_bytes=300_000, max_pixels=1_000_000))
    with TestClient(create_app(engine, settings=settings), base_url="http://127.0.0.1") as c:
        yield c


def _png(w: int = 90, h: int = 60, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _post(client, data: bytes, **fields):
    files = {"image": ("x.png", data, "application/octet-stream")}
    return client.post("/api/explain", files=files, data={k: str(v) for k, v in fields.items()})


def _sent(r: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(r["maps"]["data"]), "<f4").reshape(r["maps"]["shape"])


@pytest.mark.parametrize(("text", "margin", "canonical"), [
    ("margin:2", Margin(2), "margin:2"),
    ("margin:tabby cat:dog", Margin(2, against=1), "margin:2:1"),
])
def test_a_margin_target_equals_the_library(client, engine, text, margin, canonical):
    from camloc.explain import explain

    data = _png(97, 61, seed=3)
    r = _post(client, data, method="layercam", target=text, maps="f32", threshold=0.3)
    assert r.status_code == 200, r.text
    r = r.json()
    [e] = explain(engine.model, [Image.open(io.BytesIO(data))], target=margin, method="layercam",
                  threshold=0.3)
    assert r["target"] == canonical and [c["id"] for c in r["classes"]] == e.class_ids == [2]
    assert r["classes"][0]["name"] == "tabby cat"
    np.testing.assert_allclose(r["classes"][0]["logit"], e.logits[0], rtol=1e-5)  # the lead
    np.testing.assert_allclose(r["classes"][0]["prob"], e.probs[0], rtol=1e-6)
    assert r["classes"][0]["box"] == e.boxes[0].tolist()
    np.testing.assert_array_equal(_sent(r), e.maps)
    assert _sent(r).max() == pytest.approx(1.0)  # a map, not all zeros
    # not the class's own map and logit
    own = _post(client, data, method="layercam", classes="2", maps="f32").json()
    assert own["target"] is None and not np.allclose(_sent(own), _sent(r))
    assert abs(own["classes"][0]["logit"] - r["classes"][0]["logit"]) > 1e-3


@pytest.mark.parametrize(("fields", "reason"), [
    ({"target": "margin:crane"}, "crane"),  # two classes share the name
    ({"target": "margin:bogus"}, "bogus"),
    ({"target": "margin:99"}, "out of range"),
    ({"target": "margin:"}, "expected 'margin:CLASS'"),
    ({"target": "lead:2"}, "expected 'margin:CLASS'"),
    ({"target": "margin:1:2:3"}, "expected 'margin:CLASS'"),
    ({"target": "margin:1,2"}, "1,2"),
    ({"target": "margin:2:tabby cat"}, "cannot lead itself"),
    ({"target": "margin:2", "classes": "1"}, "not both"),
    ({"target": "margin:2", "method": "cam"}, "gradient or perturbation"),
])
def test_target_mistakes_are_400s_naming_the_field(client, fields, reason):
    fields = {"method": "gradcam", **fields}
    r = _post(client, _png(), **fields)
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"].startswith("target") and reason in body["error"]
    assert "Traceback" not in body["error"]
