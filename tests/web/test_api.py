"""The HTTP API in-process (FastAPI's TestClient, lifespan and batcher included), on a tiny model:
answers equal the library's, every client mistake is a JSON 4xx with a reason."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

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


def _png(w: int = 90, h: int = 60, seed: int = 0, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def _post(client, data: bytes | None = None, name: str = "x.png", **fields):
    files = {"image": (name, data if data is not None else _png(), "application/octet-stream")}
    return client.post("/api/explain", files=files, data={k: str(v) for k, v in fields.items()})


def _error(resp, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"], body
    assert "Traceback" not in body["error"]
    return body["error"]


def test_health_classes_methods(client, engine):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["model"] == "tiny" and h["num_classes"] == 8
    assert h["input_size"] == [64, 64] and h["all_class_maps"] is True
    cls = client.get("/api/classes").json()
    assert cls["count"] == 8 and cls["classes"][2] == {"id": 2, "name": "tabby cat"}
    assert [c["id"] for c in client.get("/api/classes", params={"q": "CAT"}).json()["classes"]] == [0, 2]
    methods = client.get("/api/methods").json()
    from camloc.cams import METHODS

    assert [m["name"] for m in methods["methods"]] == list(METHODS)  # every engine method, none hard-coded
    assert all(m["available"] and m["description"] for m in methods["methods"])
    meta = {m["name"]: m for m in methods["methods"]}
    from camloc.cams.catalog import CATALOG

    for name, info in CATALOG.items():  # family, cost and head need as the catalog says
        assert (meta[name]["family"], meta[name]["cost"], meta[name]["needs_head"]) == (
            info.family, info.cost, info.needs_head)
    assert {"features.block3", "features.block4"} <= {entry["name"] for entry in methods["layers"]}
    assert methods["layers"][0]["name"] == "" and methods["default_method"] == "cam"
    assert client.get("/docs").status_code == 200
    assert "/api/explain" in client.get("/openapi.json").json()["paths"]


def test_explain_equals_the_library(client, engine):
    """With float32 maps the response's classes, probabilities and boxes are camloc.explain's."""
    from camloc.explain import explain

    data = _png(97, 61, seed=3)
    for method in ("cam", "gradcam"):
        r = _post(client, data, method=method, top_k=3, maps="f32", threshold=0.3, multi="true").json()
        [e] = explain(engine.model, [Image.open(io.BytesIO(data))], top_k=3, threshold=0.3, multi=True,
                      method=method)
        assert [c["id"] for c in r["classes"]] == e.class_ids
        np.testing.assert_allclose([c["prob"] for c in r["classes"]], e.probs, rtol=1e-6)
        assert [c["box"] for c in r["classes"]] == e.boxes.tolist()
        assert [c["boxes"] for c in r["classes"]] == [b.tolist() for b in e.component_boxes]
        sent = np.frombuffer(base64.b64decode(r["maps"]["data"]), "<f4").reshape(r["maps"]["shape"])
        np.testing.assert_array_equal(sent, e.maps)
        assert r["image"] == {"width": 97, "height": 61} and r["method"] == method
        assert r["layers"] == list(engine.model.layers)


def test_explain_with_a_method_and_layer(client, engine):
    from camloc.explain import explain

    data = _png(80, 64, seed=7)
    r = _post(client, data, method="layercam", layer="features.block3", top_k=2, maps="f32")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "layercam" and body["layers"] == ["features.block3"]
    [e] = explain(engine.model, [Image.open(io.BytesIO(data))], top_k=2, method="layercam",
                  layer="features.block3")
    assert [c["box"] for c in body["classes"]] == e.boxes.tolist()
    assert "features.block9" in _error(_post(client, data, method="gradcam",
                                             layer="features.block9"), 400)


def test_exact_cam_on_a_headless_model_is_a_json_error(tiny_model_dir):
    """A model without a GAP head: method=cam is a 400 with the engine's reason; gradcam works."""
    from dataclasses import replace

    import camloc
    from fastapi.testclient import TestClient

    headless = WebEngine(replace(camloc.load_model(str(tiny_model_dir), device="cpu"), head=None))
    with TestClient(create_app(headless), base_url="http://127.0.0.1") as c:
        reason = _error(_post(c, method="cam"), 400)
        assert "exact CAM needs global average pooling" in reason and "gradcam" in reason
        cam = next(m for m in c.get("/api/methods").json()["methods"] if m["name"] == "cam")
        assert cam["available"] is False and cam["reason"] == reason
        assert _post(c, method="gradcam", top_k=2).json()["method"] == "gradcam"


def test_boxes_are_computed_on_the_map_as_sent(client, engine):
    from camloc.localize import boxes_from_map
    from camloc.models.spec import Geometry

    data = _png(120, 80, seed=5)
    for enc in ("f16", "png"):
        r = _post(client, data, top_k=4, maps=enc, threshold=0.45, multi="true").json()
        g = Geometry(120, 80, **{k: r["geometry"][k] for k in ("input_width", "input_height", "scale_x",
                                                                 "scale_y", "offset_x", "offset_y")})
        if enc == "f16":
            maps = np.frombuffer(base64.b64decode(r["maps"]["data"]), "<f2").astype(np.float32)
            maps = maps.reshape(r["maps"]["shape"])
        else:
            maps = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))))
                             for u in r["maps"]["png"]]).astype(np.float64) / 255.0
            maps = maps.astype(np.float32)
        for c, m in zip(r["classes"], maps):
            assert c["box"] == g.to_original_boxes(boxes_from_map(m, 0.45))[0].tolist()
            assert c["boxes"] == g.to_original_boxes(boxes_from_map(m, 0.45, multi=True)).tolist()


def test_all_class_maps_from_one_pass(client, engine):
    import torch

    from camloc.cams import CAM
    from camloc.data.images import to_tensor

    data = _png(70, 70, seed=7)
    r = _post(client, data, all_maps="true", maps="none").json()
    assert r["maps"] is None
    allm = r["all_maps"]
    assert allm["shape"] == [8, 8, 8] and allm["dtype"] == "float16"
    sent = np.frombuffer(base64.b64decode(allm["data"]), "<f2").astype(np.float32).reshape(allm["shape"])
    x, _ = to_tensor(Image.open(io.BytesIO(data)).convert("RGB"), engine.preprocess)
    with torch.inference_mode():
        want = CAM(engine.model)(x[None], classes="all").maps[0].numpy()
    np.testing.assert_allclose(sent, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))


def test_classes_by_id_and_name(client):
    r = _post(client, classes="tabby cat;1", maps="none").json()
    assert [c["id"] for c in r["classes"]] == [2, 1]
    assert [c["name"] for c in r["classes"]] == ["tabby cat", "dog"]
    assert "unknown class" in _error(_post(client, classes="unicorn"), 400)
    assert "no class" in _error(_post(client, classes=" , "), 400)
    assert "at most" in _error(_post(client, classes=",".join(["1"] * 51)), 400)
    assert "out of range" in _error(_post(client, classes="8"), 400)


def test_client_mistakes_are_json_errors(client):
    assert "not an image" in _error(_post(client, b"<html><script>alert(1)</script>", name="x.png"), 415)
    assert "empty" in _error(_post(client, b""), 400)
    truncated = _png(200, 200, fmt="JPEG")
    assert _error(_post(client, truncated[: len(truncated) // 3], name="t.jpg"), 400).startswith("image:")
    flat = io.BytesIO()
    Image.new("RGB", (1200, 1000), (9, 9, 9)).save(flat, format="PNG")  # 1.2M pixels in a few kB
    assert len(flat.getvalue()) < 300_000
    assert "pixels exceeds the limit" in _error(_post(client, flat.getvalue()), 413)
    big = _png(600, 400)  # ~720 kB of noise: over the 300 kB body limit
    assert "request body exceeds the limit" in _error(_post(client, big), 413)
    assert "method" in _error(_post(client, method="nope"), 400)
    assert "maps" in _error(_post(client, maps="jpeg"), 400)
    assert "threshold" in _error(_post(client, threshold=1.5), 422)
    assert "top_k" in _error(_post(client, top_k=0), 422)
    assert "image" in _error(client.post("/api/explain", data={"method": "cam"}), 422)
    assert _error(client.post("/api/explain", content=b"garbage",
                              headers={"content-type": "multipart/form-data; boundary=zzz"}), 400)
    assert _error(client.get("/api/nothing"), 404)
    assert _error(client.get("/api/runs"), 404).startswith("no runs folder")
    assert "Host" in _error(client.get("/api/health", headers={"host": "attacker.example"}), 400)
    # the server is still fine
    assert _post(client, top_k=2).status_code == 200


def test_image_kinds_are_sniffed_not_named(client):
    for fmt in ("JPEG", "GIF", "BMP", "WEBP", "TIFF"):
        r = _post(client, _png(50, 40, fmt=fmt), name="misleading.txt", maps="none")
        assert r.status_code == 200, (fmt, r.text)
    gray = _png(50, 40, mode="L")
    assert _post(client, gray, maps="none").json()["image"] == {"width": 50, "height": 40}


def test_chunked_upload_over_the_limit_is_cut_off(client):
    def chunks():
        for _ in range(40):
            yield b"x" * 10_000

    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode()

    def body():
        yield head
        yield from chunks()

    r = client.post("/api/explain", content=body(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert "request body exceeds the limit" in _error(r, 413)


def test_server_findings_of_issue_22_and_23(client, engine):
    """The test-only Host name is not served; --fit crop refuses a strip whose resize would be
    huge; messages speak the API's words (MB, the field names, finite numbers); /openapi.json
    names the image a file and lists the error answers."""
    from fastapi.testclient import TestClient

    from camloc.web.app import ServerSettings, create_app

    msg = _error(client.get("/api/health", headers={"host": "testserver"}), 400)
    assert "testserver" not in msg.split("answers only")[1]
    with TestClient(create_app(engine)) as default_host:  # TestClient's own Host: testserver
        assert default_host.get("/api/health").status_code == 400
    strip = io.BytesIO()
    Image.new("RGB", (1, 60000), (9, 9, 9)).save(strip, format="PNG")  # a few hundred bytes
    crop = WebEngine(engine.model, fit="crop")
    with TestClient(create_app(crop), base_url="http://127.0.0.1") as c:
        reason = _error(_post(c, strip.getvalue()), 413)
        assert "1x60000 would be resized to" in reason and "--fit crop" in reason
        assert _post(c, _png(90, 60)).status_code == 200
    assert _post(client, strip.getvalue()).status_code == 200  # stretch: 224x224, fine
    assert "20 MB" in _error(TestClient(create_app(engine, settings=ServerSettings()),
                                        base_url="http://127.0.0.1").post(
        "/api/explain", content=b"x", headers={"content-length": str(30 * 1024 * 1024),
                                                "content-type": "multipart/form-data; boundary=z"}),
        413)
    assert "finite" in _error(_post(client, threshold="nan"), 422)
    assert "classes: unknown class 'kat'" in _error(_post(client, classes="kat"), 400)
    assert "--" not in _error(_post(client, classes="kat"), 400)
    broken = (b"--zzz\r\nContent-Disposition: form-data; name=\"picture\"; "
              b"filename=\"a.png\"\r\n\r\n" + _png() + b"\r\n--zzz--\r\n")
    reason = _error(client.post("/api/explain", content=broken,
                                headers={"content-type": "multipart/form-data; boundary=zzz"}), 422)
    assert "no file part named 'image'" in reason and "Field required" not in reason
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/api/explain"]["post"]
    assert {"400", "409", "413", "415", "422", "503"} <= set(op["responses"])
    ref = op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    image = spec["components"]["schemas"][ref]["properties"]["image"]
    assert image.get("format") == "binary" or "contentMediaType" in image


def test_a_queued_slow_request_cancels_at_once(tiny_model_dir):
    """A second slow request waits for the slow lane; cancelling it answers 409 at once (not when
    the request ahead is done), and the fast lane answers meanwhile."""
    import threading
    import time

    import camloc
    from fastapi.testclient import TestClient

    from camloc.web.app import create_app

    eng = WebEngine(camloc.load_model(str(tiny_model_dir), device="cpu"))
    real = eng.explain
    release = threading.Event()

    def slow_explain(method, layer, jobs):
        if method == "scorecam":
            for _ in range(200):  # "passes" of a slow method, each can be cancelled
                jobs[0].progress.tick()
                if release.wait(0.05):
                    break
        return real(method, layer, jobs)

    eng.explain = slow_explain  # type: ignore[method-assign]
    with TestClient(create_app(eng), base_url="http://127.0.0.1") as c:
        answers: dict = {}

        def send(job: str) -> None:
            r = _post(c, method="scorecam", job=job, maps="none")
            answers[job] = (r.status_code, r.json())

        first = threading.Thread(target=send, args=("first",))
        first.start()
        while c.get("/api/jobs/first").json().get("state") != "running":
            time.sleep(0.05)
        second = threading.Thread(target=send, args=("second",))
        second.start()
        while c.get("/api/jobs/second").status_code != 200:
            time.sleep(0.05)
        assert c.get("/api/jobs/second").json()["state"] == "queued"
        assert _post(c, method="gradcam", maps="none").status_code == 200  # the fast lane
        t0 = time.perf_counter()
        assert c.delete("/api/jobs/second").status_code == 200
        second.join(timeout=5)
        assert not second.is_alive() and time.perf_counter() - t0 < 5
        assert answers["second"][0] == 409 and "cancelled" in answers["second"][1]["error"]
        assert first.is_alive()  # the request ahead is still running
        release.set()
        first.join(timeout=30)
        assert answers["first"][0] == 200
        assert c.get("/api/jobs/first").json()["state"] == "done"


def test_server_settings_bounded_like_the_cli(tiny_model_dir, capsys):
    """The library's ServerSettings and serve() refuse what `camloc serve` refuses (one checker,
    camloc.web.limits.check_server_options); --max-decoded-mp sets the decoded-pixel bound."""
    from camloc.cli import main
    from camloc.errors import ConfigError
    from camloc.web.server import serve

    for bad in ({"max_batch": 0}, {"max_wait_ms": float("nan")}, {"max_wait_ms": 1e9},
                {"limits": UploadLimits(max_bytes=0)},
                {"limits": UploadLimits(max_pixels=10**12)},
                {"max_decoded_pixels": 1_000}):  # less than one largest image
        with pytest.raises(ConfigError):
            ServerSettings(**bad)
    assert ServerSettings(max_decoded_pixels=200_000_000).max_decoded_pixels == 200_000_000
    with pytest.raises(ConfigError, match="--batch-wait-ms"):
        serve(port=0, model=str(tiny_model_dir), batch_wait_ms=float("inf"))
    with pytest.raises(ConfigError, match="--max-decoded-mp"):
        serve(port=0, model=str(tiny_model_dir), max_decoded_mp=-1)
    assert main(["serve", "--model", str(tiny_model_dir), "--max-decoded-mp", "1"]) == 2
    err = capsys.readouterr().err
    assert "--max-decoded-mp 1: smaller than one largest image" in err and "Traceback" not in err


def test_max_decoded_pixels_reaches_health(engine):
    from fastapi.testclient import TestClient

    settings = ServerSettings(limits=UploadLimits(max_pixels=1_000_000), max_decoded_pixels=3_000_000)
    with TestClient(create_app(engine, settings=settings), base_url="http://127.0.0.1") as c:
        assert c.get("/api/health").json()["limits"]["max_decoded_pixels"] == 3_000_000


def test_web_uses_only_public_names_of_the_models_package():
    """camloc.web imports no private name of camloc.models and no removed module."""
    import ast
    from pathlib import Path

    import camloc.web

    for path in Path(camloc.web.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("camloc.models"):
                assert node.module != "camloc.models.registry", path
                assert not [a.name for a in node.names if a.name.startswith("_")], path


def test_runtime_onnx_answers_as_torch(tiny_model_dir, engine, tmp_path, monkeypatch):
    """`camloc serve --runtime onnx`: exact CAM on onnxruntime (the engine `camloc explain
    --runtime onnx` uses) gives the torch server's classes, probabilities and boxes; the other
    methods still run (on torch); a bad runtime is refused at start."""
    import camloc
    from fastapi.testclient import TestClient

    from camloc.errors import ConfigError

    monkeypatch.setenv("CAMLOC_CACHE", str(tmp_path / "cache"))
    onnx = WebEngine(camloc.load_model(str(tiny_model_dir), device="cpu"), runtime="onnx")
    assert type(onnx._make("cam", None)).__name__ == "OnnxCAM"
    answers = {}
    for name, eng in (("torch", engine), ("onnx", onnx)):
        with TestClient(create_app(eng), base_url="http://127.0.0.1") as c:
            assert c.get("/api/health").json()["runtime"] == name
            r = _post(c, _png(120, 80, seed=3), top_k=3, maps="f32")
            assert r.status_code == 200, r.text
            answers[name] = r.json()["classes"]
            assert _post(c, _png(), method="gradcam", top_k=1).status_code == 200
    t, o = answers["torch"], answers["onnx"]
    assert [c["id"] for c in t] == [c["id"] for c in o]
    assert np.allclose([c["prob"] for c in t], [c["prob"] for c in o], atol=1e-5)
    assert np.allclose([c["box"] for c in t], [c["box"] for c in o], atol=1.0)
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    with pytest.raises(ConfigError, match="runtime"):
        WebEngine(camloc.load_model(str(tiny_model_dir), device="cpu"), runtime="tensorrt")


def test_tta_equals_the_library(client, engine):
    """tta=... runs the method wrapped as `camloc explain --tta` wraps it: the same classes,
    probabilities, boxes and maps as camloc.explain(..., tta=...); a bad value is a 400 naming
    the field."""
    from camloc.explain import explain

    data = _png(97, 61, seed=5)
    for method, tta in (("cam", "flip"), ("gradcam", "scales=64:80,flip")):
        r = _post(client, data, method=method, top_k=3, maps="f32", threshold=0.3, tta=tta)
        assert r.status_code == 200, r.text
        r = r.json()
        [e] = explain(engine.model, [Image.open(io.BytesIO(data))], top_k=3, threshold=0.3,
                      method=method, tta=tta)
        assert r["tta"] == ("flip" if tta == "flip" else "flip,scales=64:80")
        assert [c["id"] for c in r["classes"]] == e.class_ids
        assert [c["box"] for c in r["classes"]] == e.boxes.tolist()
        sent = np.frombuffer(base64.b64decode(r["maps"]["data"]), "<f4").reshape(r["maps"]["shape"])
        np.testing.assert_allclose(sent, e.maps, atol=1e-6)
        if tta == "flip":
            flipped = sent
    plain = _post(client, data, method="cam", top_k=3, maps="f32").json()
    assert plain["tta"] == "none"
    assert not np.allclose(np.frombuffer(base64.b64decode(plain["maps"]["data"]), "<f4"),
                           flipped.ravel())
    for bad in ("mirror", "scales=3"):
        err = _error(_post(client, data, tta=bad), 400)
        assert "tta" in err and "--tta" not in err


@pytest.fixture(scope="module")
def loc_dir(engine, tmp_path_factory):
    """A localizer folder for the tiny model (the class-agnostic PC1 kind, threshold 0.35)."""
    from camloc.localizer import Localizer, save_localizer
    from camloc.localizer.fit import auto_layers
    from camloc.localizer.model import model_fingerprint

    model = engine.model
    loc = Localizer(kind="pc1", layers=auto_layers(model)[-1:], threshold=0.35,
                    model={"name": model.spec.name, "fingerprint": model_fingerprint(model)})
    return save_localizer(loc, tmp_path_factory.mktemp("web-loc") / "loc")


@pytest.fixture(scope="module")
def loc_client(engine, loc_dir):
    """A server started with the localizer."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(WebEngine(engine.model, localizer=loc_dir)),
                    base_url="http://127.0.0.1") as c:
        yield c


def test_localizer_equals_the_library(loc_client, loc_dir, client, engine):
    """localizer=true on a server started with one: the maps and boxes of
    camloc.explain(..., localizer=DIR) (min-max maps, boxes at the localizer's threshold)."""
    from camloc.explain import explain
    from camloc.localizer import load_localizer

    health = loc_client.get("/api/health").json()
    assert health["localizer"]["threshold"] == 0.35 and client.get("/api/health").json()[
        "localizer"] is None
    data = _png(97, 61, seed=7)
    r = _post(loc_client, data, method="cam", top_k=3, maps="f32", localizer="true")
    assert r.status_code == 200, r.text
    r = r.json()
    [e] = explain(engine.model, [Image.open(io.BytesIO(data))], top_k=3, threshold=None,
                  method="cam", localizer=load_localizer(loc_dir))
    assert r["localizer"] is True and r["threshold"] == 0.35 and r["normalization"] == "minmax"
    assert [c["id"] for c in r["classes"]] == e.class_ids
    assert [c["box"] for c in r["classes"]] == e.boxes.tolist()
    sent = np.frombuffer(base64.b64decode(r["maps"]["data"]), "<f4").reshape(r["maps"]["shape"])
    np.testing.assert_allclose(sent, e.maps, atol=1e-6)
    off = _post(loc_client, data, method="cam", top_k=3, maps="f32").json()
    assert off["localizer"] is False and off["normalization"] == "max"
    assert not np.allclose(np.frombuffer(base64.b64decode(off["maps"]["data"]), "<f4"),
                           sent.ravel())
    err = _error(_post(client, data, localizer="true"), 400)
    assert "localizer" in err and "--localizer" in err


def test_serve_localizer_start_up_errors_exit_2(tiny_model_dir, loc_dir, tmp_path, capsys):
    """`camloc serve --localizer`: a missing folder or one fitted on other weights is exit 2
    with the reason, before anything is served."""
    from camloc.cli import main
    from camloc.localizer import load_localizer, save_localizer

    assert main(["serve", "--model", str(tiny_model_dir), "--port", "0", "--localizer",
                 str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    loc = load_localizer(loc_dir)
    bad = save_localizer(loc.with_(model={**loc.model, "fingerprint": "0" * 16}), tmp_path / "b")
    assert main(["serve", "--model", str(tiny_model_dir), "--port", "0", "--localizer",
                 str(bad)]) == 2
    err = capsys.readouterr().err
    assert "other weights" in err and "Traceback" not in err
