"""The page never shows a wrong picture, and a slow method never holds the page or the server:
a refused upload clears the previous result, a refused method/layer change puts the controls back
to what the picture shows (which is labelled with its method, layer and class), layers a method
cannot use are greyed out, a slow method shows its estimate, progress and a working Cancel; and
the small things of issue #23.6. One server and one browser for the module."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from .conftest import until as _until

pytestmark = pytest.mark.slow

PHOTO = "chelsea.jpg"


def _settle(page) -> None:
    _until(page, "!document.body.dataset.busy")


@pytest.fixture
def page(chromium, shared_server):
    page = chromium.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(shared_server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    try:
        yield page
    finally:
        page.close()


def _upload(page, path) -> None:
    page.set_input_files("#file", str(path))
    _until(page, "document.querySelector('#classes li') && !document.body.dataset.busy")


def _label(page) -> dict:
    return page.eval_on_selector("#view-label", "e => ({...e.dataset, text: e.textContent})")


def test_a_refused_upload_clears_the_old_result(page, samples_dir):
    _upload(page, samples_dir / PHOTO)
    assert page.locator("#classes li").count() == 5
    big = io.BytesIO()
    Image.new("RGB", (2500, 2000), (200, 30, 30)).save(big, "PNG")  # 5 Mpx > --max-pixels 4e6
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" ' \
          b'height="40" fill="red"/></svg>'
    for name, mime, data in (("big.png", "image/png", big.getvalue()),
                             ("x.svg", "image/svg+xml", svg)):
        page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
        _until(page, "document.getElementById('status').classList.contains('error')")
        _settle(page)
        # nothing of the previous picture is left: no classes, no map, no readout, no label
        assert page.locator("#classes li").count() == 0
        assert page.locator("#view").is_hidden()
        assert "Refused" in page.inner_text("#placeholder")
        assert page.inner_text("#box-readout") == "" and _label(page)["text"] == ""
        page.evaluate("() => { const e = document.getElementById('threshold'); e.value = 0.5;"
                      " e.dispatchEvent(new Event('input', {bubbles: true})); }")
        page.select_option("#method", "gradcam")
        _settle(page)
        assert page.locator("#classes li").count() == 0
        assert page.is_disabled("#download-png") and page.is_disabled("#compare")
        page.select_option("#method", "cam")
        _settle(page)
    assert page.errors == []  # no "TypeError: Cannot read properties of undefined"
    _upload(page, samples_dir / PHOTO)  # and the page works again
    assert page.locator("#classes li").count() == 5


def test_a_refused_change_keeps_controls_and_picture_together(page, samples_dir):
    _upload(page, samples_dir / PHOTO)
    page.select_option("#method", "gradcam")
    _until(page, "document.getElementById('view-label').dataset.method === 'gradcam'")
    page.select_option("#layer", "conv_stem")
    _until(page, "document.getElementById('view-label').dataset.layer === 'conv_stem'")
    _settle(page)
    label = _label(page)
    assert label["text"].startswith("gradcam on conv_stem") and "class" in label["text"]
    # exact CAM cannot use conv_stem: choosing cam greys it out and takes cam's own layer
    page.select_option("#method", "cam")
    _until(page, "document.getElementById('view-label').dataset.method === 'cam'")
    _settle(page)
    assert page.input_value("#layer") == ""
    greyed = page.eval_on_selector_all("#layer option:disabled", "os => os.map(o => o.value)")
    assert "conv_stem" in greyed and "blocks.5" in greyed and "" not in greyed
    # a request the server refuses (forced past the greyed option) leaves the controls on what
    # the picture shows, never the old map under new controls
    page.evaluate("() => { const s = document.getElementById('layer'); s.value = 'blocks.5';"
                  " s.dispatchEvent(new Event('change', {bubbles: true})); }")
    _until(page, "document.getElementById('status').classList.contains('error')")
    _settle(page)
    assert page.input_value("#method") == "cam" and page.input_value("#layer") == ""
    assert _label(page)["method"] == "cam" and "still showing cam" in page.inner_text("#status")
    page.select_option("#method", "gradcam")
    _settle(page)
    assert page.eval_on_selector_all("#layer option:disabled", "os => os.length") == 0
    assert page.errors == []


def test_a_slow_method_shows_estimate_progress_and_cancels(page, samples_dir, shared_server):
    import httpx

    _upload(page, samples_dir / PHOTO)
    assert "(slow)" in page.inner_text("#method option[value='scorecam']")
    page.select_option("#method", "scorecam")
    page.wait_for_selector("#job:not([hidden])")
    _until(page, "document.getElementById('job').dataset.estimate")
    _until(page, "document.getElementById('job').dataset.state === 'running'"
                 " && document.getElementById('job-progress').value > 0", timeout=120)
    assert "pass" in page.inner_text("#job-info") and "left" in page.inner_text("#job-info")
    # while it runs, a CAM request from elsewhere answers (it has its own lane)
    r = httpx.post(shared_server.url + "/api/explain", timeout=60, data={"maps": "none"},
                   files={"image": ("c.jpg", (samples_dir / PHOTO).read_bytes())})
    assert r.status_code == 200 and r.json()["seconds"] < 30
    page.click("#cancel")
    assert page.locator("#job").is_hidden()
    assert page.inner_text("#status").startswith("cancelled")
    assert page.input_value("#method") == "cam" and _label(page)["method"] == "cam"
    import time

    deadline = time.monotonic() + 60  # the server stops the request at its next pass
    est = shared_server.url + "/api/estimate?method=scorecam"
    while httpx.get(est).json()["waiting"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(est).json()["waiting"] == 0  # the slow lane is free again
    assert page.errors == []


def test_small_things(page, samples_dir):
    photo = samples_dir / PHOTO
    _upload(page, photo)
    # the same file chosen again is a new choice (the input is reset)
    page.evaluate("window.CamlocApp.state.fileName = ''")
    page.set_input_files("#file", str(photo))
    _until(page, f"window.CamlocApp.state.fileName === '{PHOTO}' && !document.body.dataset.busy")
    # top-k beyond 50: the field says what runs
    page.fill("#topk", "500")
    page.dispatch_event("#topk", "change")
    _settle(page)
    assert page.input_value("#topk") == "50" and page.locator("#classes li").count() == 50
    assert "1 to 50" in page.inner_text("#status") or page.locator("#classes li").count() == 50
    page.fill("#topk", "5")
    page.dispatch_event("#topk", "change")
    _settle(page)
    # a search with no match says so
    page.fill("#search", "zzqx")
    assert "no class name contains" in page.inner_text("#search-results")
    page.fill("#search", "")
    # downloads: names say image, method (and class); the PNG has no click marker
    view = page.locator("#view")
    before = Image.open(io.BytesIO(view.screenshot()))
    with page.expect_download() as dl:
        page.click("#download-png")
    clean = Image.open(dl.value.path()).convert("RGB")
    first = page.locator("#classes li .name").first.inner_text()
    assert dl.value.suggested_filename.startswith("camloc-chelsea-cam-") and \
        dl.value.suggested_filename.endswith(".png")
    bb = view.bounding_box()
    view.click(position={"x": 0.5 * bb["width"], "y": 0.5 * bb["height"]})
    page.wait_for_selector("#point-classes li")
    with page.expect_download() as dl:
        page.click("#download-png")
    marked = Image.open(dl.value.path()).convert("RGB")
    assert marked.tobytes() == clean.tobytes()  # the marker is not in the PNG
    with page.expect_download() as dl:
        page.click("#download-json")
    assert dl.value.suggested_filename == "camloc-chelsea-cam.json"
    assert json.loads(open(dl.value.path(), encoding="utf-8").read())["classes"][0]["name"] == first
    assert before.size[0] > 0 and page.errors == []


def test_viewer_height_scale_and_raw_map(page):
    """Issue #23.4: a 40x2000 PNG became a 734 x 36,700 px canvas; no colour scale; no raw view."""
    tall = io.BytesIO()
    Image.new("RGB", (40, 2000), (250, 250, 250)).save(tall, "PNG")
    page.set_input_files("#file", files=[{"name": "tall.png", "mimeType": "image/png",
                                          "buffer": tall.getvalue()}])
    _until(page, "document.querySelector('#classes li') && !document.body.dataset.busy")
    bb = page.locator("#view").bounding_box()
    assert bb["height"] <= 0.75 * 860 + 1 and bb["width"] < 100, bb
    scale = page.eval_on_selector("#scale", "c => Array.from(c.getContext('2d')"
                                            ".getImageData(0, 0, c.width, 1).data)")
    assert scale[3] == 0 and scale[-1] == 255  # from transparent to opaque
    shown = page.locator("#view").screenshot()
    page.check("#raw-map")
    assert page.locator("#view").screenshot() != shown
    page.uncheck("#raw-map")
    assert page.errors == []


def test_settings_are_shared_through_the_address(chromium, shared_server, samples_dir):
    """#23 "What to build": the settings in the URL; opening it restores them."""
    page = chromium.new_page(viewport={"width": 1280, "height": 860})
    try:
        page.goto(shared_server.url + "/#method=gradcam&layer=blocks.5&threshold=0.35"
                                      "&classes=281,285&multi=1&topk=3")
        page.wait_for_selector("body[data-ready='1']")
        assert page.input_value("#method") == "gradcam" and page.input_value("#layer") == "blocks.5"
        assert page.input_value("#threshold") == "0.35" and page.is_checked("#multi")
        _upload(page, samples_dir / PHOTO)
        ids = page.eval_on_selector_all("#classes li", "ls => ls.map(l => l.dataset.class)")
        assert ids == ["281", "285"]
        assert _label(page)["method"] == "gradcam" and _label(page)["layer"] == "blocks.5"
        page.evaluate("() => { const e = document.getElementById('threshold'); e.value = 0.6;"
                      " e.dispatchEvent(new Event('input', {bubbles: true})); }")
        from urllib.parse import parse_qs

        shared = parse_qs(page.evaluate("location.hash").lstrip("#"))
        assert shared["method"] == ["gradcam"] and shared["layer"] == ["blocks.5"]
        assert shared["threshold"] == ["0.60"] and shared["classes"] == ["281,285"]
        # a bad address never breaks the page
        page.goto(shared_server.url + "/#method=nope&threshold=nan&classes=x,99999&topk=-4")
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert page.input_value("#method") == "cam" and page.input_value("#threshold") == "0.2"
        _upload(page, samples_dir / PHOTO)
        assert page.locator("#classes li").count() == 5
    finally:
        page.close()
