"""The page in a real browser: ``camloc serve`` (the offline default model) driven by Chromium.

Upload a photo -> classes appear -> move the threshold slider -> the box changes -> switch the
method -> click a point -> the class list there; also class search, methods side by side, both
downloads, paste and drop, and the runs browser. Every number the page shows is checked against
the library, and a screenshot of each step is kept (``$CAMLOC_UI_SCREENSHOTS`` or a temp folder).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from PIL import Image

from camloc.cams import upsample
from camloc.localize import boxes_from_map
from camloc.web.encode import encode_maps

from .conftest import until as _until

pytestmark = pytest.mark.slow

PHOTO = "chelsea.jpg"


def _library(model, path, method: str, threshold: float, classes=None):
    """What the page must show: camloc.explain's classes, and boxes of the float16 maps it gets."""
    from camloc.explain import explain

    kw = {"classes": classes} if classes is not None else {"top_k": 5}
    [e] = explain(model, [path], method=method, **kw)
    f16 = encode_maps(e.maps, "f16")[1]

    def box(j: int, t: float, multi: bool = False) -> list:
        return e.geometry.to_original_boxes(boxes_from_map(f16[j], t, multi=multi)).tolist()

    return e, box


def _readout(page) -> dict:
    el = page.locator("#box-readout")
    return {"box": json.loads(el.get_attribute("data-box")), "boxes": json.loads(el.get_attribute("data-boxes")),
            "threshold": float(el.get_attribute("data-threshold")), "class": int(el.get_attribute("data-class-id"))}


def _settle(page) -> None:
    _until(page, "!document.body.dataset.busy")


def _slide(page, selector: str, value: float) -> None:
    page.evaluate("([s, v]) => { const e = document.querySelector(s); e.value = v;"
                  " e.dispatchEvent(new Event('input', {bubbles: true})); }", [selector, str(value)])


def test_page_end_to_end(start_server, chromium, default_model, samples_dir, eval_run, screenshot_dir):
    srv = start_server("--runs", str(eval_run["root"]))
    photo = samples_dir / PHOTO
    page = chromium.new_page(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    shots = []

    def shot(name: str) -> None:
        path = screenshot_dir / f"{len(shots) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    page.goto(srv.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    options = page.eval_on_selector_all("#method option", "os => os.map(o => o.value)")
    from camloc.cams import METHODS

    assert options == list(METHODS)  # every method of the engine is offered
    shot("start")

    # 1. upload -> classes appear, as the library ranks them
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#classes li")
    _settle(page)
    e_cam, box_cam = _library(default_model, photo, "cam", 0.2)
    names = page.locator("#classes li .name").all_inner_texts()
    probs = page.locator("#classes li .prob").all_inner_texts()
    assert names == e_cam.class_names
    assert probs == [f"{100 * p:.1f}%" for p in e_cam.probs]
    r = _readout(page)
    assert r["class"] == e_cam.class_ids[0] and r["threshold"] == 0.2
    assert r["box"] == box_cam(0, 0.2)[0]
    shot("classes")

    # 2. the threshold slider redraws the box in the browser, as the library would
    before = page.locator("#view").screenshot()
    _slide(page, "#threshold", 0.6)
    r = _readout(page)
    assert r["threshold"] == 0.6 and r["box"] == box_cam(0, 0.6)[0]
    assert r["box"] != box_cam(0, 0.2)[0]
    assert page.locator("#view").screenshot() != before
    page.check("#multi")
    _slide(page, "#threshold", 0.7)
    r = _readout(page)
    assert r["boxes"] == box_cam(0, 0.7, multi=True) and r["box"] == box_cam(0, 0.7)[0]
    page.uncheck("#multi")
    _slide(page, "#opacity", 0.8)
    shot("threshold")

    # 3. switch the method: same classes, the method's maps
    page.select_option("#method", "gradcam")
    _until(page, "document.getElementById('status').textContent.startsWith('gradcam:')")
    _settle(page)
    e_gc, box_gc = _library(default_model, photo, "gradcam", 0.7, classes=e_cam.class_ids)
    r = _readout(page)
    assert r["class"] == e_cam.class_ids[0]
    assert r["box"] == box_gc(0, 0.7)[0]
    assert page.locator("#classes li .name").all_inner_texts() == e_cam.class_names
    shot("method")

    # 4. click a point: the classes whose (all-class, exact CAM) maps are highest there
    canvas = page.locator("#view")
    bb = canvas.bounding_box()
    fx, fy = 0.3, 0.35
    canvas.click(position={"x": fx * bb["width"], "y": fy * bb["height"]})
    page.wait_for_selector("#point-classes li")
    listed = [int(v) for v in page.eval_on_selector_all("#point-classes li", "ls => ls.map(l => l.dataset.class)")]
    px = float(page.get_attribute("#point-classes", "data-x"))
    py = float(page.get_attribute("#point-classes", "data-y"))
    img = Image.open(photo)
    assert abs(px - fx * img.width) < 2 and abs(py - fy * img.height) < 2
    from camloc.cams import CAM
    from camloc.data.images import load_image, to_tensor

    x, g = to_tensor(load_image(photo), default_model.spec.preprocess.with_(fit="stretch"))
    with torch.inference_mode():
        raw = CAM(default_model)(x[None], classes="all").maps
    raw16 = raw.numpy().astype("<f2").astype(np.float32)
    up = upsample(torch.from_numpy(raw16), (224, 224), "bicubic")[0].numpy()
    xi, yi = int(np.floor(px * g.scale_x)), int(np.floor(py * g.scale_y))
    assert listed == np.argsort(-up[:, yi, xi], kind="stable")[:5].tolist()
    shot("point")

    # 5. any class by name search
    page.fill("#search", "tabby")
    page.wait_for_selector("#search-results li")
    tabby = int(page.get_attribute("#search-results li >> nth=0", "data-class"))
    assert "tabby" in default_model.spec.class_name(tabby).lower()
    page.click("#search-results li >> nth=0")
    _until(page, f"document.getElementById('box-readout').dataset.classId === '{tabby}'")
    _settle(page)
    shot("search")

    # 6. methods side by side for the selected class
    page.click("#compare")
    page.wait_for_selector("#compare-panel[data-done='1']", timeout=120_000)
    figs = page.eval_on_selector_all("#compare-grid figure",
                                     "fs => fs.map(f => [f.dataset.method, f.dataset.box || null])")
    from camloc.web.engine import WebEngine

    meta = WebEngine(default_model).methods()
    assert [m for m, _ in figs] == [m["name"] for m in meta if m["available"] and not m["slow"]]
    offered = page.eval_on_selector_all("#compare-methods input", "bs => bs.map(b => b.value)")
    assert offered == [m["name"] for m in meta if m["available"]]  # the slow ones can be ticked
    assert all(b is not None for _, b in figs)
    shot("compare")

    # 7. downloads: the overlay PNG and the result JSON
    with page.expect_download() as dl:
        page.click("#download-png")
    png = Image.open(dl.value.path())
    assert png.format == "PNG" and png.size == (img.width, img.height)
    with page.expect_download() as dl:
        page.click("#download-json")
    result = json.loads(open(dl.value.path(), encoding="utf-8").read())
    assert result["method"] == "gradcam" and result["threshold"] == 0.7
    assert [c["id"] for c in result["classes"]][:5] == e_cam.class_ids
    assert result["point"]["classes"][0]["id"] == listed[0]

    # 8. paste and drop a picture
    other = samples_dir / "coffee.jpg"
    b64 = base64.b64encode(other.read_bytes()).decode()
    for event in ("paste", "drop"):
        page.evaluate("""([b64, kind]) => {
            const bin = atob(b64), bytes = new Uint8Array(bin.length);
            for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'coffee.jpg', {type: 'image/jpeg'}));
            if (kind === 'paste')
                document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}));
            else document.getElementById('drop').dispatchEvent(
                new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""", [b64, event])
        _until(page, "document.querySelector('#classes li .name') && !document.body.dataset.busy"
                     " && window.CamlocApp.state.fileName === 'coffee.jpg'")
        e_coffee, _ = _library(default_model, other, "gradcam", 0.7)
        assert page.locator("#classes li .name").first.inner_text() == e_coffee.class_names[0]
        page.evaluate("window.CamlocApp.state.fileName = ''")

    # 9. a bad file gets a readable error, and the page keeps working
    page.set_input_files("#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not a png"}])
    _until(page, "document.getElementById('status').classList.contains('error')", timeout=30)

    # 10. the runs browser: list, sortable per-image table, click-through with boxes
    page.click("#tab-runs")
    page.wait_for_selector("#runs-table tbody tr")
    page.click("#runs-table tbody tr[data-run='synth-eval']")
    page.wait_for_selector("#per-image tbody tr")
    recs = eval_run["records"]
    ids = page.eval_on_selector_all("#per-image tbody tr", "rs => rs.map(r => r.dataset.imageId)")
    by_iou = sorted(recs, key=lambda r: (r["iou"], r["image_id"]))
    assert ids == [r["image_id"] for r in by_iou]  # default: IoU ascending (worst first)
    page.click("#per-image th[data-key='iou']")
    ids = page.eval_on_selector_all("#per-image tbody tr", "rs => rs.map(r => r.dataset.imageId)")
    assert [next(r["iou"] for r in recs if r["image_id"] == i) for i in ids] == \
        sorted((r["iou"] for r in recs), reverse=True)
    figures = page.locator("#run-figures td").all_inner_texts()
    assert "MaxBoxAccV2 (IoU 0.3/0.5/0.7)" in figures
    page.click(f"#per-image tbody tr[data-image-id='{ids[0]}']")
    page.wait_for_selector(f"#run-image-panel[data-image-id='{ids[0]}']", timeout=30_000)
    assert "IoU" in page.inner_text("#run-image-caption")
    shot("runs")

    # 11. the API reference, rendered from /openapi.json by the server's own page
    page.goto(srv.url + "/docs")
    page.wait_for_selector("body[data-ready='1']")
    explain_doc = page.locator("section[data-path='/api/explain'][data-method='post']")
    fields = [t.split(" ")[0] for t in explain_doc.locator("td:first-child").all_inner_texts()]
    assert {"image", "method", "layer", "top_k", "classes", "threshold", "multi", "maps",
            "all_maps"} <= set(fields)
    paths = page.eval_on_selector_all("section.endpoint", "ss => ss.map(s => s.dataset.path)")
    assert {"/api/health", "/api/classes", "/api/methods", "/api/runs"} <= set(paths)
    shot("apidocs")

    # nothing was fetched from anywhere but the server (no CDN)
    outside = [u for u in requested if not u.startswith((srv.url, "data:", "blob:"))]
    assert outside == [], outside

    # the only console errors allowed: the refused upload of step 9
    assert all("status of 400" in e or "status of 415" in e for e in errors), errors
    page.close()
    for p in shots:
        assert p.stat().st_size > 10_000, p
    assert srv.alive()
