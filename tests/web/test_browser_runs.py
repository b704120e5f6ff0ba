"""The runs browser in Chromium, round two: a batch upload from the page becomes a run (with
progress) and opens in the Runs tab with its saved overlay and map; an evaluation run shows an
image's saved score map; the curves have ticks on both axes; two runs side by side (curves and
per-image IoU changes); "Open in Explain" explains that image. One server (the tiny model) and one
browser for the module."""

from __future__ import annotations

import pytest

from .conftest import Server, copy_runs_with_changes
from .conftest import until as _until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory, eval_run):
    return copy_runs_with_changes(tmp_path_factory.mktemp("browser-runs") / "runs", eval_run)


@pytest.fixture(scope="module")
def server(tiny_model_dir, runs_root):
    srv = Server(["--model", str(tiny_model_dir), "--runs", str(runs_root)])
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def page(chromium, server):
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    try:
        yield page
    finally:
        assert page.errors == []  # type: ignore[attr-defined]
        page.close()


def _open_run(page, run_id: str) -> None:
    page.click("#tab-runs")
    page.wait_for_selector(f"#runs-table tbody tr[data-run='{run_id}']")
    page.click(f"#runs-table tbody tr[data-run='{run_id}']")
    _until(page, f"document.getElementById('run-detail').dataset.run === '{run_id}'")


def test_batch_upload_from_the_page(page, samples_dir, runs_root, screenshot_dir):
    page.set_input_files("#batch-files", [str(samples_dir / "chelsea.jpg"),
                                          str(samples_dir / "coffee.jpg")])
    _until(page, "document.getElementById('batch-job').dataset.state === 'done'")
    assert "2 explained" in page.inner_text("#batch-info")
    assert page.eval_on_selector("#batch-progress", "e => e.value") == 1
    run_id = page.eval_on_selector("#batch-job", "e => e.dataset.run")
    assert (runs_root / run_id / "results.jsonl").is_file()
    page.click("#batch-open")
    _until(page, f"document.getElementById('run-detail').dataset.run === '{run_id}'")
    assert page.is_visible("#page-runs") and page.is_hidden("#page-explain")
    heads = page.eval_on_selector_all("#per-image thead th", "ths => ths.map(t => t.textContent)")
    assert heads == ["image", "top class", "probability"]
    assert page.is_hidden("#run-curves") and page.is_hidden("#run-hist")  # no IoU in an explain run
    names = page.eval_on_selector_all("#per-image tbody tr td:first-child",
                                      "tds => tds.map(t => t.textContent)")
    assert names == ["001-chelsea.jpg", "002-coffee.jpg"]
    page.click("#per-image tbody tr:first-child")
    _until(page, "document.getElementById('run-image-panel').dataset.imageId")
    # the saved overlay drawn, the saved map shown as a picture
    _until(page, "document.querySelector('#run-image-maps img') && "
                 "document.querySelector('#run-image-maps img').naturalWidth > 0")
    assert page.eval_on_selector("#run-image", "c => c.width") > 100
    page.screenshot(path=str(screenshot_dir / "10-explain-run.png"), full_page=True)
    # open in Explain: that photo explained on the explain page
    page.click("#open-in-explain")
    _until(page, "document.querySelector('#classes li') && !document.body.dataset.busy")
    assert page.is_visible("#page-explain")
    assert page.eval_on_selector("#view-label", "e => e.textContent")


def test_evaluation_run_scoremap_ticks_and_side_by_side(page, eval_run, screenshot_dir):
    _open_run(page, "synth-eval")
    assert page.is_visible("#run-curves") and page.is_visible("#run-hist")
    for canvas in ("#run-curves", "#run-hist"):
        ticks = page.eval_on_selector(canvas, "c => c.dataset.xticks")
        assert ticks == "0,0.2,0.4,0.6,0.8,1"
    assert page.eval_on_selector("#run-curves", "c => c.dataset.yticks") == "0,25,50,75,100"
    # tick labels are drawn: the canvas has ink left of the plot box (the y labels)
    ink = page.evaluate("""() => { const c = document.getElementById('run-curves');
        const d = c.getContext('2d').getImageData(0, 20, 34, c.height - 60).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert ink > 30
    first = eval_run["records"][0]["image_id"]
    page.fill("#per-image-filter", first)
    page.click(f"#per-image tbody tr[data-image-id='{first}']")
    _until(page, "document.querySelector('#run-image-maps img') && "
                 "document.querySelector('#run-image-maps img').naturalWidth === 32")
    assert "score map" in page.inner_text("#run-image-maps")
    # two runs side by side
    page.select_option("#compare-run", "changed")
    _until(page, "document.getElementById('run-compare').dataset.b === 'changed'")
    assert page.is_visible("#compare-curves")
    rows = page.eval_on_selector_all("#compare-table tbody tr", "trs => trs.map(t => t.dataset.imageId)")
    assert set(rows[:2]) == {eval_run["records"][0]["image_id"], eval_run["records"][1]["image_id"]}
    assert "B better on" in page.inner_text("#compare-summary")
    page.screenshot(path=str(screenshot_dir / "11-side-by-side.png"), full_page=True)
    # open in Explain from an evaluation run's image
    page.click("#open-in-explain")
    _until(page, "document.querySelector('#classes li') && !document.body.dataset.busy")
    assert page.is_visible("#page-explain")


def test_tta_in_the_page_and_the_address(chromium, server, samples_dir):
    """TTA from the address is chosen, sent, labelled on the picture and written back; choosing
    none explains again without it."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(server.url + "/#method=gradcam&tta=flip&topk=2")
        page.wait_for_selector("body[data-ready='1']")
        assert page.eval_on_selector("#tta", "e => e.value") == "flip"
        page.set_input_files("#file", str(samples_dir / "chelsea.jpg"))
        _until(page, "document.querySelector('#classes li') && !document.body.dataset.busy")
        assert page.evaluate("() => window.CamlocApp.state.response.tta") == "flip"
        assert "with TTA flip" in page.inner_text("#view-label")
        assert "tta=flip" in page.evaluate("() => location.hash")
        options = page.eval_on_selector_all("#tta option", "os => os.map(o => o.value)")
        assert options == ["", "flip", "flip,scales=64:80"]  # the tiny model's input is 64
        page.select_option("#tta", "flip,scales=64:80")
        _until(page, "window.CamlocApp.state.response.tta === 'flip,scales=64:80' && "
                     "!document.body.dataset.busy")
        page.select_option("#tta", "")
        _until(page, "window.CamlocApp.state.response.tta === 'none' && !document.body.dataset.busy")
        assert "tta=" not in page.evaluate("() => location.hash")
        assert "TTA" not in page.inner_text("#view-label")
    finally:
        page.close()
