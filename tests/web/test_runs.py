"""The runs browser: a real evaluation run is listed and read back; nothing outside the runs
folder is ever served (``..``, absolute paths, symbolic links, URL-encoded traversal)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from camloc.web.runs import PathRefused, RunsIndex, safe_join

SECRET = "top-secret-content-7f3a"


@pytest.fixture
def tree(tmp_path: Path) -> dict:
    """runs/ with a file, a subfolder, symlinks in and out; a secret file beside runs/."""
    runs = tmp_path / "runs"
    (runs / "a" / "b").mkdir(parents=True)
    (runs / "a" / "b" / "ok.txt").write_text("fine")
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "report.json").write_text('{"dataset": {"name": "leak"}}')
    os.symlink(tmp_path / "secret.txt", runs / "link-out.txt")
    os.symlink(tmp_path / "outside", runs / "dir-out")
    os.symlink(runs / "a" / "b" / "ok.txt", runs / "link-in.txt")
    return {"root": runs.resolve(), "tmp": tmp_path}


@pytest.mark.parametrize("rel,status", [
    ("../secret.txt", 403), ("a/../../secret.txt", 403), ("a/b/../../../secret.txt", 403),
    ("/etc/passwd", 403), ("\\etc\\passwd", 403), ("C:/Windows/win.ini", 403), ("..\\secret.txt", 403),
    ("link-out.txt", 403), ("dir-out/report.json", 403), ("a/b/ok.txt\x00.png", 400),
    ("a/missing.txt", 404), ("%2e%2e/secret.txt", 404),  # not decoded here: a literal folder name
])
def test_safe_join_refuses(tree, rel, status):
    with pytest.raises(PathRefused) as exc:
        safe_join(tree["root"], rel)
    assert exc.value.status == status


def test_safe_join_allows_inside(tree):
    root = tree["root"]
    assert safe_join(root, "a/b/ok.txt") == root / "a" / "b" / "ok.txt"
    assert safe_join(root, "./a//b/ok.txt") == root / "a" / "b" / "ok.txt"
    assert safe_join(root, "link-in.txt").read_text() == "fine"  # a link that stays inside
    assert safe_join(root, "") == root


def test_runs_listing_skips_what_leaves_the_folder(tree):
    runs = RunsIndex(tree["root"]).list_runs()
    assert runs == []  # the only report.json is behind a link that leaves the folder
    os.symlink(tree["tmp"] / "outside" / "report.json", tree["root"] / "a" / "report.json")
    assert RunsIndex(tree["root"]).list_runs() == []


def test_runs_index_reads_a_real_evaluation(eval_run):
    idx = RunsIndex(eval_run["root"])
    listed = {r["id"]: r for r in idx.list_runs()}
    assert set(listed) == {"synth-eval", "inline"}
    rep = eval_run["report"]
    for rid in listed:
        s = listed[rid]
        assert s["maxboxacc_v2"] == rep["localization"]["maxboxacc_v2"]["value"]
        assert s["images"] == rep["counts"]["scored"] == len(eval_run["records"])
        assert s["has_html"] and s["has_per_image"]
        got = idx.run(rid)
        assert [r["image_id"] for r in got["per_image"]] == [r["image_id"] for r in eval_run["records"]]
        assert [r["iou"] for r in got["per_image"]] == [r["iou"] for r in eval_run["records"]]
        assert [r["correct"] for r in got["per_image"]] == [r["iou"] >= 0.5 for r in eval_run["records"]]
        assert dict(got["figures"])["Images scored / failed"] == f"{len(eval_run['records'])} / 0"


def test_image_info_boxes(eval_run):
    idx = RunsIndex(eval_run["root"])
    rec = eval_run["records"][3]
    sample = next(s for s in eval_run["dataset"].samples if s.image_id == rec["image_id"])
    info = idx.image_info("synth-eval", rec["image_id"])
    w, h = sample.size
    assert (info["width"], info["height"]) == (w, h)
    assert info["gt_boxes"] == sample.boxes.tolist()
    # inclusive corners at 224: the last pixel ends at x1 + 1 (as the report gallery draws it)
    assert info["pred_box"] == pytest.approx([rec["box"][0] * w / 224, rec["box"][1] * h / 224,
                                              (rec["box"][2] + 1) * w / 224,
                                              (rec["box"][3] + 1) * h / 224],
                                             rel=1e-12)
    assert info["iou"] == rec["iou"] and info["label"] == sample.label
    jpeg = idx.image_jpeg("synth-eval", rec["image_id"])
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    assert Image.open(io.BytesIO(jpeg)).size == (w, h)
    with pytest.raises(PathRefused) as exc:
        idx.image_info("synth-eval", "../../../etc/passwd")
    assert exc.value.status == 404


@pytest.fixture(scope="module")
def runs_client(eval_run, tiny_model_dir, tmp_path_factory):
    """The app over the eval run, plus traps: a link out of the runs folder, and a run whose
    report names a dataset whose image id escapes the dataset's folder."""
    import camloc
    from fastapi.testclient import TestClient

    from camloc.web.app import create_app
    from camloc.web.engine import WebEngine

    root = Path(eval_run["root"])
    secret = tmp_path_factory.mktemp("outside") / "secret.txt"
    secret.write_text(SECRET)
    for link in ("leak.txt",):
        if (root / link).is_symlink():
            (root / link).unlink()
        os.symlink(secret, root / link)
    app = create_app(WebEngine(camloc.load_model(str(tiny_model_dir))), runs_dir=str(root))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c
    (root / "leak.txt").unlink()


def _refused(resp) -> None:
    assert resp.status_code in (400, 403, 404), (resp.status_code, resp.text[:200])
    assert SECRET not in resp.text and "root:" not in resp.text
    assert set(resp.json()) == {"error"}


def test_runs_http(runs_client, eval_run):
    c = runs_client
    listed = c.get("/api/runs").json()
    assert {r["id"] for r in listed["runs"]} == {"synth-eval", "inline"}
    run = c.get("/api/runs/report", params={"run": "synth-eval"}).json()
    assert len(run["per_image"]) == len(eval_run["records"])
    rec = eval_run["records"][0]
    info = c.get("/api/runs/image", params={"run": "synth-eval", "image_id": rec["image_id"]}).json()
    # the runs browser's extras: the method of each run, the image's class named
    assert {r["id"]: r["method"] for r in listed["runs"]}["synth-eval"] == "cam"
    ds = eval_run["dataset"]
    assert info["class_name"] == ds.class_names[info["label"]]
    img = c.get(info["url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    html = c.get("/runs/files/synth-eval/report.html")
    assert html.status_code == 200 and "<html>" in html.text
    assert "sandbox" in html.headers["content-security-policy"]


@pytest.mark.parametrize("url", [
    "/runs/files/leak.txt",
    "/runs/files/%2e%2e/secret.txt",
    "/runs/files/..%2fsecret.txt",
    "/runs/files/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/runs/files/%252e%252e/secret.txt",
    "/runs/files//etc/passwd",
    "/runs/files/%2Fetc%2Fpasswd",
    "/runs/files/synth-eval/%00",
    "/api/runs/report?run=..",
    "/api/runs/report?run=%2e%2e%2f..",
    "/api/runs/report?run=/etc",
    "/api/runs/report?run=leak.txt/..",
    "/api/runs/image?run=synth-eval&image_id=../../../../etc/passwd",
    "/api/runs/image.jpg?run=..%2F..&image_id=x",
])
def test_runs_http_traversal_refused(runs_client, url):
    _refused(runs_client.get(url))


def test_runs_image_escaping_its_dataset_is_refused(runs_client, eval_run, tmp_path):
    """A report can name any dataset; an image id that leaves that dataset's folder is refused."""
    import json

    root = Path(eval_run["root"])
    ds = tmp_path / "evil-ds"
    (ds / "metadata").mkdir(parents=True)
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(outside)
    (ds / "metadata" / "image_ids.txt").write_text("../outside.png\n")
    (ds / "metadata" / "class_labels.txt").write_text("../outside.png,0\n")
    (ds / "metadata" / "localization.txt").write_text("../outside.png,1,1,5,5\n")
    run = root / "evil"
    run.mkdir()
    try:
        (run / "report.json").write_text(json.dumps({"dataset": {"root": str(ds), "format": "wsol"}}))
        (run / "per_image.jsonl").write_text(json.dumps({"image_id": "../outside.png", "iou": 1.0}) + "\n")
        for path in ("/api/runs/image", "/api/runs/image.jpg"):
            r = runs_client.get(path, params={"run": "evil", "image_id": "../outside.png"})
            assert r.status_code in (403, 404), r.status_code
            assert r.headers["content-type"] == "application/json"
    finally:
        for f in run.iterdir():
            f.unlink()
        run.rmdir()


def _within(seconds: float, fn):
    """``fn()`` in a thread; fails (instead of hanging the suite) when it takes longer."""
    import threading

    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds} s"
    return out["r"]


def test_odd_runs_never_block_or_break_the_browser(runs_client, eval_run):
    """Issue #22: a FIFO named report.json blocked every request for it (about 40 exhausted the
    pool); one report.json with unexpected types made /api/runs answer 500; a per_image.jsonl that
    is not UTF-8 gave 500; a run whose report.json is not JSON answered 200."""
    import json

    c = runs_client
    root = Path(eval_run["root"])
    made = []

    def run_dir(name: str) -> Path:
        d = root / name
        d.mkdir()
        made.append(d)
        return d

    try:
        os.mkfifo(run_dir("fifo") / "report.json")
        (run_dir("types") / "report.json").write_text(json.dumps(
            {"model": "m", "dataset": 5, "counts": [], "localization": {"maxboxacc_v2": 3}}))
        odd = run_dir("latin1")
        (odd / "report.json").write_text(json.dumps({"dataset": {"name": "x"}}))
        good = json.dumps({"image_id": "a", "iou": 0.75}).encode()
        latin1 = b'{"image_id": "caf\xe9", "iou": 0.5}\n'
        (odd / "per_image.jsonl").write_bytes(latin1 + good + b"\n")
        (run_dir("broken") / "report.json").write_text("{not json")

        listed = _within(30, lambda: c.get("/api/runs"))
        assert listed.status_code == 200, listed.text
        runs = {r["id"]: r for r in listed.json()["runs"]}
        assert {"synth-eval", "inline", "types", "latin1"} <= set(runs)
        assert "regular file" in runs["fifo"]["error"]
        assert "error" in runs["broken"]
        for _ in range(50):  # more requests than the thread pool has threads: none blocks
            r = _within(10, lambda: c.get("/api/runs/report", params={"run": "fifo"}))
            assert r.status_code == 422 and "not a regular file" in r.json()["error"]
        r = c.get("/api/runs/report", params={"run": "broken"})
        assert r.status_code == 422 and "report.json cannot be read" in r.json()["error"]
        r = c.get("/api/runs/report", params={"run": "latin1"})
        assert r.status_code == 200, r.text
        assert [rec["image_id"] for rec in r.json()["per_image"]] == ["a"]  # the bad line skipped
        assert c.get("/api/runs/report", params={"run": "types"}).status_code == 200
        assert c.get("/api/health").status_code == 200
    finally:
        for d in made:
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
