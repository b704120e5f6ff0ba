"""`camloc explain` end to end in a temp dir: outputs, bad files, resume, atomic writes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from camloc.cli import main
from camloc.io import atomic_write_text, read_jsonl


@pytest.fixture
def image_dir(tmp_path, samples_dir):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    shutil.copy(samples_dir / "chelsea.jpg", d / "chelsea.jpg")
    shutil.copy(samples_dir / "coffee.jpg", d / "sub" / "coffee.jpg")
    Image.new("LA", (33, 21), (90, 200)).save(d / "sub" / "gray_alpha.png")
    (d / "zero.jpg").write_bytes(b"")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return d


def test_explain_end_to_end(image_dir, tmp_path):
    out = tmp_path / "run"
    rc = main(["explain", str(image_dir), "--out", str(out), "--top-k", "2", "--save-maps",
               "--device", "cpu", "--batch-size", "2"])
    assert rc == 1  # some inputs failed -> documented exit code 1
    results = read_jsonl(out / "results.jsonl")
    assert sorted(r["path"].split("/")[-1] for r in results) == ["chelsea.jpg", "coffee.jpg",
                                                                  "gray_alpha.png"]
    errors = read_jsonl(out / "errors.jsonl")
    assert sorted(e["path"].split("/")[-1] for e in errors) == ["broken.png", "zero.jpg"]
    assert all(e["error"] for e in errors)
    cat = next(r for r in results if r["path"].endswith("chelsea.jpg"))
    assert cat["class_ids"][0] in range(281, 286) and len(cat["probs"]) == 2
    assert cat["width"] == 451 and cat["height"] == 300
    for r in results:
        assert (out / r["overlay"]).is_file()
        maps = np.load(out / r["maps"])
        assert maps.shape == (2, 224, 224) and maps.max() <= 1.0 + 1e-6
        for x0, y0, x1, y1 in r["boxes"]:
            assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"]
    overlay = Image.open(out / cat["overlay"])
    assert overlay.height == 300 and overlay.width > 451  # two panels side by side
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"found": 5, "explained": 3, "skipped": 0, "failed": 2,
                                  "in_results": 3}
    assert manifest["status"] == "complete" and manifest["settings"]["top_k"] == 2
    assert not list(out.rglob("*.tmp"))

    # re-running skips finished images; --overwrite redoes them
    rc = main(["explain", str(image_dir), "--out", str(out), "--top-k", "2", "--device", "cpu"])
    assert rc == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == 3 and manifest["counts"]["explained"] == 0
    assert len(read_jsonl(out / "results.jsonl")) == 3
    rc = main(["explain", str(image_dir / "chelsea.jpg"), "--out", str(out), "--overwrite",
               "--classes", "Egyptian cat,1", "--device", "cpu"])
    assert rc == 0
    [rec] = read_jsonl(out / "results.jsonl")
    assert rec["class_ids"] == [285, 1] and rec["class_names"][1] == "goldfish, Carassius auratus"


def test_explain_bad_arguments(tmp_path, samples_dir):
    assert main(["explain", str(samples_dir / "chelsea.jpg"), "--out", str(tmp_path),
                 "--classes", "no-such-class"]) == 2
    assert main(["explain", str(samples_dir / "chelsea.jpg"), "--model", "vgg16",
                 "--weights", "none", "--out", str(tmp_path)]) == 2
    assert main(["explain", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o")]) == 1


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_text(p, "old")

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")

    from camloc.io import atomic_open

    with pytest.raises(RuntimeError):
        with atomic_open(p, "wb") as fh:
            fh.write(b"partial")
            raise RuntimeError("interrupted")
    assert p.read_text() == "old" and not list(tmp_path.glob("*.tmp"))


def test_default_top_k_is_capped_by_a_small_model(tmp_path, small_images, tiny_model_3):
    """A 3-class model (a probe head, a small trained model): the default asks for all 3 classes;
    an explicit -k above the model's classes is a usage error."""
    model = tiny_model_3
    out = tmp_path / "out"
    assert main(["explain", str(small_images), "--model", str(model), "--out", str(out),
                 "--no-overlays", "--device", "cpu"]) == 0
    recs = read_jsonl(out / "results.jsonl")
    assert len(recs) == 2 and all(len(r["class_ids"]) == 3 for r in recs)
    assert main(["explain", str(small_images), "--model", str(model), "-k", "4",
                 "--out", str(tmp_path / "o2")]) == 2
