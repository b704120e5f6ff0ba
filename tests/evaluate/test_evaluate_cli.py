"""`camloc evaluate` and `camloc score` run as a user runs them (subprocesses) on a tiny model:
any map method and layer, per-image records, refusals (classes, sizes, options), safe map paths,
header sizes in `score`, and `score --boxes`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest



class _Run:
    """In-process ``camloc`` run: ``returncode`` and ``stderr`` as a subprocess's."""

    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, args):
        from types import SimpleNamespace

        from camloc.cli import main

        rc = main(args)
        err = " ".join(self.capsys.readouterr().err.split())
        return SimpleNamespace(returncode=rc, stderr=err)


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_gradient_method_and_layer_are_run_and_recorded(cli, synth3, tiny_model_dir, tmp_path):
    out = tmp_path / "gpp"
    r = cli(["evaluate", str(synth3), "--split", "test", "-m", str(tiny_model_dir),
                 "--method", "gradcam++", "--layer", "features", "--workers", "0",
                 "--device", "cpu", "--gallery", "1", "-o", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    rep = _report(out)
    assert rep["method"] == {"name": "gradcam++", "layers": ["features"], "options": {},
                             "needs_grad": True}
    assert rep["counts"] == {"scored": 12, "failed": 0}
    # per_image.jsonl: one line per image, the fields the runs browser reads
    recs = [json.loads(x) for x in (out / "per_image.jsonl").read_text().splitlines()]
    assert len(recs) == 12
    for rec in recs:
        assert set(rec) >= {"image_id", "label", "top1_correct", "top5_correct", "iou", "box",
                            "gt_boxes", "correct"}
        assert 0.0 <= rec["iou"] <= 1.0 and len(rec["box"]) == 4 and rec["gt_boxes"]
        assert rec["correct"] == (rec["iou"] >= 0.5)
    assert sum(r["top1_correct"] for r in recs) / 12 * 100 == pytest.approx(
        rep["classification"]["top1"])
    at_fixed = sum(r["iou"] >= 0.5 for r in recs) / 12 * 100
    assert at_fixed == pytest.approx(rep["localization"]["gt_known_loc"]["at_fixed"])
    # the runs browser reads these records as they are
    from camloc.web.runs import RunsIndex

    run = RunsIndex(tmp_path).run("gpp")
    assert [x["iou"] for x in run["per_image"]] == [x["iou"] for x in recs]


def test_methods_give_different_maps_and_cam_is_the_default(synth3, tiny_model_dir, tmp_path):
    """The method changes the maps that are scored (not only the report's label)."""
    from camloc.data.open import open_dataset
    from camloc.evaluation.evaluate import evaluate_model
    from camloc.models import load_model

    model = load_model(str(tiny_model_dir), device="cpu")
    ds = open_dataset(synth3, split="test")
    curves = {}
    for m in ("cam", "eigencam"):
        rep = evaluate_model(model, ds, method=m, batch_size=5)
        assert rep["method"]["name"] == m
        curves[m] = rep["localization"]["curves"]["v2"]["50"]
    assert curves["cam"] != curves["eigencam"]
    assert evaluate_model(model, ds)["localization"]["curves"]["v2"]["50"] == curves["cam"]


@pytest.mark.parametrize("args, says", [
    (["--workers", "-1"], "--workers"),
    (["--method", "nope"], "method"),
    (["--layer", "no.such.layer"], "no.such.layer"),
    (["--fixed-threshold", "nan"], "threshold"),
])
def test_bad_options_exit_2_before_out_exists(synth3, tiny_model_dir, tmp_path, args, says,
                                             capsys):
    from camloc.cli import main

    out = tmp_path / "out"
    rc = main(["evaluate", str(synth3), "--split", "test", "-m", str(tiny_model_dir),
               "--device", "cpu", "-o", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    assert says in err and "Traceback" not in err
    assert not out.exists()


def test_classes_of_another_model_are_refused(synth3, tmp_path, capsys):
    """A 3-class dataset against a 1000-class ImageNet model: refused, not scored."""
    from camloc.cli import main

    out = tmp_path / "out"
    rc = main(["evaluate", str(synth3), "--split", "test", "--weights", "none",
               "--device", "cpu", "-o", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2, err[-2000:]
    assert "do not match the model's" in err and "3 classes, the model 1000" in err
    assert not out.exists()


def test_wrong_image_sizes_are_refused(synth3, tiny_model_dir, tmp_path, capsys):
    from camloc.cli import main

    data = tmp_path / "data"
    shutil.copytree(synth3, data)
    sizes = data / "metadata" / "test" / "image_sizes.txt"
    lines = sizes.read_text().splitlines()
    first = lines[0].split(",")
    lines[0] = f"{first[0]},{first[2]},{int(first[1]) * 2}"
    sizes.write_text("\n".join(lines) + "\n")
    for verb in (["evaluate", "-m", str(tiny_model_dir), "--device", "cpu"],
                 ["score", "--maps", str(tmp_path)],
                 ["compare", "--model", str(tiny_model_dir), "--methods", "cam",
                  "--no-faithfulness", "--device", "cpu"]):
        out = tmp_path / f"out-{verb[0]}"
        rc = main([verb[0], str(data), "--split", "test", *verb[1:], "-o", str(out)])
        err = " ".join(capsys.readouterr().err.split())
        assert rc == 2, err[-2000:]
        assert "image_sizes.txt:1" in err and "Traceback" not in err
        assert not out.exists()


def test_library_loader_refuses_a_size_mismatch_per_image(synth3, tiny_model_dir):
    """Without the up-front check, the image whose decoded size disagrees is a failed image
    (with the metadata line), and the rest are scored."""
    from dataclasses import replace

    from camloc.data.open import open_dataset
    from camloc.evaluation.evaluate import evaluate_state
    from camloc.models import load_model

    ds = open_dataset(synth3, split="test")
    s = ds.samples[0]
    ds.samples[0] = replace(s, size=(s.size[0] + 1, s.size[1]))
    st = evaluate_state(load_model(str(tiny_model_dir), device="cpu"), ds, check_dataset=False)
    assert st.images == len(ds.samples) - 1 and len(st.failed) == 1
    assert "image_sizes.txt" in st.failed[0]["error"] and "metadata gives" in st.failed[0]["error"]


def _csv_set(synth3: Path, dst: Path, rename: dict[str, str] | None = None,
             sizes: bool = False) -> Path:
    """The synthetic test split as a camloc CSV (no image sizes unless ``sizes``)."""
    from camloc.data.open import open_dataset

    ds = open_dataset(synth3, split="test")
    dst.mkdir(parents=True)
    rows = ["path,label,x0,y0,x1,y1" + (",width,height" if sizes else "")]
    for s in ds.samples:
        name = (rename or {}).get(Path(s.image_id).name, Path(s.image_id).name)
        shutil.copy(s.path, dst / name)
        for b in s.boxes:
            extra = f",{s.size[0]},{s.size[1]}" if sizes else ""
            rows.append(f"{name},{s.label}," + ",".join(f"{v:g}" for v in b) + extra)
    (dst / "annotations.csv").write_text("\n".join(rows) + "\n")
    (dst / "classes.txt").write_text("\n".join(ds.class_names) + "\n")
    return dst


def test_save_maps_stay_inside_out_and_score_reads_them_back(synth3, tiny_model_dir, tmp_path,
                                                            capsys):
    cli = _Run(capsys)
    """An id that is not a safe file name is written at its safe_relpath under --out, and
    `score` (sizes from the image headers: the CSV has none) finds it and gives the same
    figures."""
    data = _csv_set(synth3, tmp_path / "csv", rename={"00012.png": "ab*?.png"})
    out = tmp_path / "eval"
    r = cli(["evaluate", str(data), "-m", str(tiny_model_dir), "--device", "cpu",
                 "--workers", "0", "--save-maps", "--gallery", "0", "-o", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    maps = sorted(p.relative_to(out / "scoremaps").as_posix()
                  for p in (out / "scoremaps").rglob("*.npy"))
    assert len(maps) == 12 and any(m.startswith("ab__.png~") for m in maps), maps
    sc = tmp_path / "score"
    r = cli(["score", str(data), "--maps", str(out / "scoremaps"), "--workers", "1",
                 "-o", str(sc)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "read 12 image header(s)" in r.stderr
    a, b = _report(out), _report(sc)
    assert b["image_sizes"]["from_headers"] == 12
    for key in ("maxboxacc_v1", "maxboxacc_v2", "gt_known_loc"):
        assert a["localization"][key] == b["localization"][key]


def test_score_boxes_from_results_jsonl_and_coco(synth3, tmp_path, capsys):
    cli = _Run(capsys)
    from camloc.data.open import open_dataset

    ds = open_dataset(synth3, split="test")
    lines, images, anns = [], [], []
    for k, s in enumerate(ds.samples):
        gt = [float(v) for v in s.boxes[0]]
        box = gt if k % 2 == 0 else [gt[0], gt[1], gt[0] + 1, gt[1] + 1]  # half hit, half miss
        lines.append(json.dumps({"path": str(s.path), "width": s.size[0], "height": s.size[1],
                                 "class_ids": [s.label], "class_names": ["x"], "probs": [0.9],
                                 "boxes": [box]}))
        images.append({"id": k + 1, "file_name": s.image_id, "width": s.size[0],
                       "height": s.size[1]})
        anns.append({"id": k + 1, "image_id": k + 1, "category_id": int(s.label), "score": 0.9,
                     "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    cats = [{"id": i, "name": n} for i, n in enumerate(ds.class_names)]
    (tmp_path / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": cats}))
    for name in ("results.jsonl", "instances.json"):
        out = tmp_path / f"out-{name}"
        r = cli(["score", str(synth3), "--split", "test", "--boxes",
                     str(tmp_path / name), "-o", str(out)])
        assert r.returncode == 0, r.stderr[-2000:]
        rep = _report(out)
        assert rep["protocol"]["name"] == "boxes" and rep["counts"]["scored"] == 12
        assert rep["counts"]["matched"] == 12 and rep["top"]["0.5"] == 50.0, rep["counts"]
    r = cli(["score", str(synth3), "--split", "test", "--boxes", str(tmp_path / "no.json"),
                 "-o", str(tmp_path / "x")])
    assert r.returncode == 2 and "no such file" in r.stderr and not (tmp_path / "x").exists()
    r = cli(["score", str(synth3), "--split", "test", "-o", str(tmp_path / "x")])
    assert r.returncode == 2 and "--maps" in r.stderr


def test_image_root_synsets_and_num_classes_options(synth3, tmp_path, capsys):
    cli = _Run(capsys)
    """--image-root: metadata in one folder, images in another (wsolevaluation's layout);
    --num-classes is checked against the metadata."""
    meta = tmp_path / "wsol"
    shutil.copytree(synth3 / "metadata", meta / "metadata")
    maps = tmp_path / "maps"
    from camloc.data.open import open_dataset

    for s in open_dataset(synth3, split="test").samples:
        p = maps / f"{s.image_id}.npy"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, np.full((8, 8), 0.5, np.float32))
    r = cli(["score", str(meta), "--split", "test", "--maps", str(maps), "--workers", "1",
                 "-o", str(tmp_path / "o1")])
    assert r.returncode == 2, r.stderr[-1500:]  # the images are not under the metadata folder
    r = cli(["score", str(meta), "--split", "test", "--image-root", str(synth3), "--maps",
                 str(maps), "--workers", "1", "-o", str(tmp_path / "o2")])
    assert r.returncode == 0, r.stderr[-1500:]
    r = cli(["score", str(meta), "--split", "test", "--image-root", str(synth3),
                 "--num-classes", "7", "--maps", str(maps), "-o", str(tmp_path / "o3")])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-1500:]
