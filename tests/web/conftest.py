"""Fixtures for the web tests: a tiny model folder, a real ``camloc serve`` subprocess on a free
loopback port, Debian's Chromium driven by Playwright (skipped with a reason where either is
missing), and where screenshots go (``CAMLOC_UI_SCREENSHOTS`` or a temporary folder)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CAMLOC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
TINY_CLASSES = ["cat", "dog", "tabby cat", "car", "crane", "crane", "tiger", "zebra"]
STATIC = Path(__file__).resolve().parents[2] / "src" / "camloc" / "web" / "static"


def write_tiny_model(folder: Path, num_classes: int = 8, size: int = 64) -> Path:
    """A random tiny-cnn model folder (``spec.json`` + weights) that ``camloc.load_model`` reads."""
    import torch

    from camloc.models.archs import build_arch
    from camloc.train.checkpoint import write_model_dir

    torch.manual_seed(0)
    net = build_arch("tiny-cnn", num_classes=num_classes, width=8)
    return write_model_dir(folder, net, {
        "name": "tiny", "arch": "tiny-cnn", "num_classes": num_classes, "arch_kwargs": {"width": 8},
        "class_names": TINY_CLASSES[:num_classes], "preprocess": {"input_size": [size, size]}})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-model"))


class Server:
    """A ``camloc serve`` subprocess; ``url`` is where it listens."""

    def __init__(self, args: list[str], timeout: float = 120.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        src = str(Path(__file__).resolve().parents[2] / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "camloc", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env, start_new_session=True)
        self.lines: list[str] = []
        self.url = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            self.lines.append(line)
            m = re.search(r"camloc serve: (http://127\.0\.0\.1:\d+)/", line)
            if m:
                self.url = m.group(1)
                break
        if not self.url:
            self.stop()
            raise RuntimeError("camloc serve did not start:\n" + "".join(self.lines))
        # keep reading its output, so a chatty server never blocks on a full pipe
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self._wait_ready(deadline)

    def _drain(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def _wait_ready(self, deadline: float) -> None:
        import httpx

        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("camloc serve never answered /api/health:\n" + "".join(self.lines))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        """Stop the server (SIGTERM, then SIGKILL after 15 s); return the rest of its output."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.join(timeout=5)
        elif self.proc.stdout:
            self.lines.append(self.proc.stdout.read())
        return "".join(self.lines)


@pytest.fixture
def start_server() -> Iterator:
    """``start_server(*args) -> Server``; every server started is stopped after the test."""
    started: list[Server] = []

    def start(*args: str, timeout: float = 120.0) -> Server:
        s = Server(list(args), timeout=timeout)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    """A headless Chromium (Debian's, through Playwright's ``executable_path``)."""
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; no browser download needed)")
    exe = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def js_page(chromium) -> Iterator:
    """A blank page with ``maps.js`` loaded (no server needed)."""
    page = chromium.new_page()
    page.set_content("<!doctype html><html><body></body></html>")
    page.add_script_tag(content=(STATIC / "maps.js").read_text(encoding="utf-8"))
    try:
        yield page
    finally:
        page.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where browser tests keep their screenshots: ``$CAMLOC_UI_SCREENSHOTS`` or a temp folder."""
    target = os.environ.get("CAMLOC_UI_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("ui-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_eval_run(root: Path, model_dir: Path) -> dict:
    """A real evaluation run on a small synthetic dataset: ``root/data/synth`` (the dataset) and
    ``root/runs/synth-eval`` (report.json + report.html + per_image.jsonl, as ``camloc evaluate``
    writes them plus the per-image records of its accumulator); ``root/runs/inline`` holds the
    same report with the records inside report.json."""
    import json

    from camloc.data.datasets import open_dataset
    from camloc.data.synth import make_synth
    from camloc.evaluate import build_report, evaluate_state
    from camloc.models import load_model
    from camloc.report import write_report

    ds_path = make_synth(root / "data" / "synth", classes=4, images=40, size=64)
    ds = open_dataset(ds_path, split="test")
    model = load_model(str(model_dir), device="cpu")
    # the random tiny model's classes are not the dataset's: the runs browser only needs a run
    state = evaluate_state(model, ds, batch_size=8, check_dataset=False)
    report = build_report(state, model, ds, "wsol", 0.01)
    records = state.localization.per_image
    run = root / "runs" / "synth-eval"
    write_report(run, report, [r["iou"] for r in records])
    (run / "per_image.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    inline = root / "runs" / "inline"
    write_report(inline, dict(report, per_image=records), [r["iou"] for r in records])
    return {"root": root / "runs", "run": "synth-eval", "inline": "inline", "dataset": ds,
            "records": records, "report": report}


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    return make_eval_run(tmp_path_factory.mktemp("eval-run"), tiny_model_dir)


@pytest.fixture(scope="module")
def shared_server(eval_run) -> Iterator[Server]:
    """One ``camloc serve`` (the default model, ``--max-pixels 4000000`` so that a refused picture
    is cheap to make, the eval run's folder as ``--runs``) for every test of a module."""
    srv = Server(["--max-pixels", "4000000", "--runs", str(eval_run["root"])])
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def axe_js() -> str | None:
    """axe-core's ``axe.min.js`` (npm ``axe-core``): ``$CAMLOC_AXE_JS``, or ``node_modules`` in the
    repository or npm's global folder; ``None`` when absent (the check is then skipped)."""
    candidates = [os.environ.get("CAMLOC_AXE_JS", "")]
    repo = Path(__file__).resolve().parents[2]
    candidates.append(str(repo / "node_modules" / "axe-core" / "axe.min.js"))
    npm = shutil.which("npm")
    if npm:
        try:
            root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True,
                                  timeout=20).stdout.strip()
            candidates.append(str(Path(root) / "axe-core" / "axe.min.js"))
        except (OSError, subprocess.SubprocessError):
            pass
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c).read_text(encoding="utf-8")
    return None


def copy_runs_with_changes(root: Path, eval_run: dict) -> Path:
    """The eval run's folder copied to ``root``; ``changed``: the same report with other IoUs for
    the first two images (0.95 and 0.0); a saved scoremap (a left-to-right ramp, 24 x 32) for the
    first image of ``synth-eval``."""
    import json

    import numpy as np

    shutil.copytree(eval_run["root"], root)
    changed = root / "changed"
    changed.mkdir()
    shutil.copy(root / "synth-eval" / "report.json", changed / "report.json")
    recs = [dict(r) for r in eval_run["records"]]
    recs[0]["iou"], recs[1]["iou"] = 0.95, 0.0
    (changed / "per_image.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    from camloc.data.paths import safe_relpath

    first = eval_run["records"][0]["image_id"]
    target = root / "synth-eval" / "scoremaps" / safe_relpath(first, ".npy")
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, np.tile(np.linspace(0, 1, 32, dtype=np.float32), (24, 1)))
    return root


def until(page, expr: str, timeout: float = 60.0) -> None:
    """Poll the page until the JavaScript expression ``expr`` is truthy (``AssertionError`` after
    ``timeout`` seconds): the browser tests' one way to wait for the page (``page.evaluate`` runs
    outside the page's Content-Security-Policy; ``wait_for_function`` would need 'unsafe-eval',
    which the page rightly refuses)."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expr})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expr}")
        page.wait_for_timeout(50)
