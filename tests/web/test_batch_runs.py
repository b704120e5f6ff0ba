"""Batch upload (several photos -> a small explain run under ``--runs DIR``, followed as a job)
and what the runs browser shows of it: the run listed, its per-image rows, each image's saved
overlay and maps (in-process, tiny model)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from camloc.web.app import create_app
from camloc.web.engine import WebEngine

from .conftest import copy_runs_with_changes

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "camloc" / "assets" / "samples"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory, eval_run) -> Path:
    return copy_runs_with_changes(tmp_path_factory.mktemp("batch-runs") / "runs", eval_run)


@pytest.fixture(scope="module")
def client(tiny_model_dir, runs_root):
    import camloc
    from fastapi.testclient import TestClient

    engine = WebEngine(camloc.load_model(str(tiny_model_dir), device="cpu"))
    with TestClient(create_app(engine, runs_dir=str(runs_root)), base_url="http://127.0.0.1") as c:
        yield c


def _wait(client, job: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/api/jobs/{job}").json()
        if state["state"] not in ("queued", "running"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"batch {job} still running after {timeout} s: {state}")


@pytest.fixture(scope="module")
def batch(client, runs_root) -> dict:
    files = [("images", (name, (SAMPLES / name).read_bytes(), "image/jpeg"))
             for name in ("chelsea.jpg", "coffee.jpg")]
    files.append(("images", ("notes.txt", b"not a picture", "text/plain")))
    resp = client.post("/api/batch", files=files, data={"top_k": "2", "threshold": "0.3"})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    state = _wait(client, body["job"])
    return {"answer": body, "state": state, "folder": runs_root / body["run"]}


def test_batch_upload_writes_an_explain_run(batch):
    """The run folder is the one `camloc explain` writes (the library's run_explain): a manifest,
    one results line per photo, overlays and maps; the non-image is an error, not a dead batch."""
    assert batch["answer"]["images"] == 3
    state = batch["state"]
    assert state["state"] == "done" and state["done"] == 2 and state["failed"] == 1, state
    assert state["passes"] == 3 and state["expected_passes"] == 3
    folder = batch["folder"]
    man = json.loads((folder / "manifest.json").read_text())
    assert man["command"] == "explain" and man["status"] == "complete"
    assert man["settings"]["threshold"] == 0.3 and man["settings"]["top_k"] == 2
    recs = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert [Path(r["path"]).name for r in recs] == ["001-chelsea.jpg", "002-coffee.jpg"]
    assert all(len(r["class_ids"]) == 2 for r in recs)
    for r in recs:
        assert (folder / r["overlay"]).is_file()
        assert np.load(folder / r["maps"]).shape[0] == 2
    errors = (folder / "errors.jsonl").read_text()
    assert "003-notes.txt" in errors


def test_batch_run_in_the_runs_browser(client, batch):
    run_id = batch["answer"]["run"]
    listed = {r["id"]: r for r in client.get("/api/runs").json()["runs"]}
    assert listed[run_id]["kind"] == "explain" and listed[run_id]["images"] == 2
    data = client.get("/api/runs/report", params={"run": run_id}).json()
    assert data["kind"] == "explain" and len(data["per_image"]) == 2
    row = data["per_image"][0]
    assert row["name"] == "001-chelsea.jpg" and row["class_name"]
    info = client.get("/api/runs/image", params={"run": run_id, "image_id": row["image_id"]})
    assert info.status_code == 200, info.text
    info = info.json()
    kinds = {m["kind"]: m["url"] for m in info["saved_maps"]}
    assert set(kinds) == {"overlay", "maps"}
    png = client.get(kinds["overlay"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(info["classes"]) == 2 and info["width"] == 451


def test_batch_refusals(client):
    one = [("images", ("a.jpg", (SAMPLES / "chelsea.jpg").read_bytes(), "image/jpeg"))]
    resp = client.post("/api/batch", files=one, data={"method": "nosuch"})
    assert resp.status_code == 400 and "nosuch" in resp.json()["error"]
    many = one * 65
    resp = client.post("/api/batch", files=many)
    assert resp.status_code == 400 and "at most 64" in resp.json()["error"]


def test_scoremap_of_an_evaluation_run(client, eval_run):
    first = eval_run["records"][0]["image_id"]
    info = client.get("/api/runs/image", params={"run": "synth-eval", "image_id": first}).json()
    [saved] = info["saved_maps"]
    assert saved["kind"] == "scoremap"
    png = client.get(saved["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    from PIL import Image
    import io

    img = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB")).astype(int)
    assert img.shape == (24, 32, 3)
    assert img[0, 0, 2] > img[0, 0, 0] and img[0, -1, 0] > img[0, -1, 2]  # jet: blue -> red
    second = eval_run["records"][1]["image_id"]
    other = client.get("/api/runs/image", params={"run": "synth-eval", "image_id": second})
    assert other.json()["saved_maps"] == []
    missing = client.get("/api/runs/map.png", params={"run": "synth-eval", "image_id": second})
    assert missing.status_code == 404


def test_two_runs_side_by_side(client, eval_run):
    data = client.get("/api/runs/compare", params={"a": "synth-eval", "b": "changed"}).json()
    n = len(eval_run["records"])
    assert data["common"] == n and data["only_a"] == data["only_b"] == 0
    assert len(data["curves"]) == 2 and data["curves"][0]["thresholds"]
    recs = eval_run["records"]
    top = {r["image_id"]: r for r in data["per_image"][:2]}
    assert set(top) == {recs[0]["image_id"], recs[1]["image_id"]}
    assert top[recs[0]["image_id"]]["diff"] == pytest.approx(0.95 - recs[0]["iou"])
    assert top[recs[1]["image_id"]]["diff"] == pytest.approx(-recs[1]["iou"])
    assert all(r["diff"] == 0 for r in data["per_image"][2:])
    bad = client.get("/api/runs/compare", params={"a": "synth-eval", "b": "nope"})
    assert bad.status_code == 404


def test_a_queued_batch_is_cancelled(client, runs_root):
    """DELETE /api/jobs/JOB on a batch waiting behind another: it never runs (no results), the
    one ahead completes."""
    photo = (SAMPLES / "chelsea.jpg").read_bytes()
    ahead = client.post("/api/batch", files=[("images", (f"p{i}.jpg", photo, "image/jpeg"))
                                             for i in range(12)]).json()
    behind = client.post("/api/batch", files=[("images", ("q.jpg", photo, "image/jpeg"))]).json()
    assert client.delete(f"/api/jobs/{behind['job']}").status_code == 200
    assert _wait(client, behind["job"])["state"] == "cancelled"
    assert not (runs_root / behind["run"] / "results.jsonl").exists()
    done = _wait(client, ahead["job"])
    assert done["state"] == "done" and done["done"] == 12
