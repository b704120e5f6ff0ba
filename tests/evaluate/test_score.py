"""`score` on maps made outside camloc: validation of each map, sharded processes == one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from camloc.cli import main
from camloc.data.datasets import open_dataset
from camloc.data.synth import make_synth
from camloc.score import score_maps


@pytest.fixture(scope="module")
def synth_with_maps(tmp_path_factory):
    root = make_synth(tmp_path_factory.mktemp("synth") / "data", classes=3, images=40, size=64,
                      seed=3)
    ds = open_dataset(root, split="test")
    maps = tmp_path_factory.mktemp("maps")
    rng = np.random.default_rng(0)
    for s in ds.samples:
        m = cv2.resize(rng.random((7, 7)).astype(np.float32), (56, 56),
                       interpolation=cv2.INTER_CUBIC)
        m = (m - m.min()) / (m.max() - m.min())
        path = maps / f"{s.image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, m)
    return root, ds, maps


def test_parallel_shards_equal_one_process(synth_with_maps):
    _, ds, maps = synth_with_maps
    one = score_maps(maps, ds, interval=0.01, workers=1)
    two = score_maps(maps, ds, interval=0.01, workers=2)
    assert one.images == two.images == len(ds.samples) and not one.failed
    assert one.localization.compute() == two.localization.compute()
    assert one.pxap.compute() == two.pxap.compute()


def test_bad_maps_are_reported_and_the_rest_scored(synth_with_maps, tmp_path):
    root, ds, maps = synth_with_maps
    bad = tmp_path / "maps"
    import shutil

    shutil.copytree(maps, bad)
    ids = [s.image_id for s in ds.samples]
    np.save(bad / f"{ids[0]}.npy", np.full((56, 56), np.nan, np.float32))
    np.save(bad / f"{ids[1]}.npy", np.full((56, 56), 3.0, np.float32))
    np.save(bad / f"{ids[2]}.npy", np.zeros((2, 3, 4), np.float32))
    (bad / f"{ids[3]}.npy").write_bytes(b"not numpy")
    (bad / f"{ids[4]}.npy").unlink()
    out = tmp_path / "report"
    rc = main(["score", str(root), "--split", "test", "--maps", str(bad), "--out", str(out),
               "--workers", "1"])
    assert rc == 1
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"scored": len(ids) - 5, "failed": 5}
    reasons = {f["image_id"]: f["error"] for f in report["failed"]}
    assert "NaN" in reasons[ids[0]] and "outside [0, 1]" in reasons[ids[1]]
    assert "2-D" in reasons[ids[2]] and "cannot read" in reasons[ids[3]]
    assert "missing" in reasons[ids[4]]
    # --normalize rescues the out-of-range map and zeroes the NaN one
    rc = main(["score", str(root), "--split", "test", "--maps", str(bad), "--out", str(out),
               "--normalize", "--workers", "2"])
    report = json.loads((out / "report.json").read_text())
    assert rc == 1 and report["counts"]["failed"] == 3
    assert "pxap" in report and "localization" in report


def test_calibrated_threshold_from_another_split(synth_with_maps, tmp_path):
    root, ds, maps = synth_with_maps
    first = tmp_path / "first"
    assert main(["score", str(root), "--split", "test", "--maps", str(maps), "--out", str(first),
                 "--workers", "1"]) == 0
    rep1 = json.loads((first / "report.json").read_text())
    tau = rep1["localization"]["maxboxacc_v1"]["threshold"]
    second = tmp_path / "second"
    assert main(["score", str(root), "--split", "test", "--maps", str(maps), "--out", str(second),
                 "--workers", "1", "--calibrate", str(first / "report.json")]) == 0
    rep2 = json.loads((second / "report.json").read_text())
    cal = rep2["localization"]["calibrated"]
    assert cal["threshold"] == tau
    # the calibrated GT-known Loc is the curve's value at that threshold
    k = rep2["localization"]["curves"]["thresholds"].index(tau)
    assert cal["gt_known_loc"] == rep2["localization"]["curves"]["v1"]["50"][k]
    assert rep2["pxap"]["calibrated"]["threshold"] == tau
    assert "Calibrated tau" in (second / "report.html").read_text()
    assert main(["score", str(root), "--split", "test", "--maps", str(maps), "--out", str(second),
                 "--calibrate", str(tmp_path / "nope.json")]) == 2


def _one_map_dataset(tmp_path, maps_by_id, size=(8, 6)):
    """A user-format dataset (boxes only) whose images are never opened, and its maps folder."""
    root = tmp_path / "ds"
    meta = root / "metadata"
    meta.mkdir(parents=True)
    ids = list(maps_by_id)
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (meta / "image_sizes.txt").write_text("".join(f"{i},{size[0]},{size[1]}\n" for i in ids))
    (meta / "localization.txt").write_text("".join(f"{i},0,0,{size[0] - 1},{size[1] - 1}\n"
                                                   for i in ids))
    maps = tmp_path / "maps"
    for i in ids:  # the images exist (score never opens them)
        (root / i).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / i), np.zeros((size[1], size[0]), np.uint8))
    for i, m in maps_by_id.items():
        (maps / i).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{i}.npy", m)
    return root, maps


def test_map_shapes_dtypes_and_infinite_values(tmp_path):
    """Issue #10: a 1x1 map is scored (not "shape ()"), singleton axes are dropped, float64 stays
    float64, complex maps and infinite values are refused with a reason, also with --normalize
    (the rest of the run is scored)."""
    from camloc.score import load_scoremap

    good = np.linspace(0, 1, 48).reshape(6, 8)
    cases = {"a/one.png": np.ones((1, 1)), "a/lead.png": good[None], "a/trail.png": good[..., None],
             "a/f64.png": good, "a/cplx.png": good.astype(np.complex128),
             "a/inf.png": np.where(good > 0.5, np.inf, good), "a/vec.png": np.ones(5),
             "a/int.png": (good > 0.5).astype(np.int64)}
    root, maps = _one_map_dataset(tmp_path, cases)
    assert load_scoremap(maps, "a/one.png").shape == (1, 1)
    assert load_scoremap(maps, "a/lead.png").shape == load_scoremap(maps, "a/trail.png").shape == (6, 8)
    assert load_scoremap(maps, "a/f64.png").dtype == np.float64
    np.testing.assert_array_equal(load_scoremap(maps, "a/int.png"), good > 0.5)
    for normalize in (False, True):
        out = tmp_path / f"out{normalize}"
        argv = ["score", str(root), "--maps", str(maps), "--out", str(out), "--workers", "1"]
        assert main(argv + (["--normalize"] if normalize else [])) == 1
        report = json.loads((out / "report.json").read_text())
        reasons = {f["image_id"]: f["error"] for f in report["failed"]}
        assert set(reasons) == {"a/cplx.png", "a/inf.png", "a/vec.png"}, reasons
        assert "complex" in reasons["a/cplx.png"] and "imaginary" in reasons["a/cplx.png"]
        assert "infinite" in reasons["a/inf.png"] and "2-D" in reasons["a/vec.png"]
        assert report["counts"] == {"scored": 5, "failed": 3}
    # an id that would leave --maps is read at its safe_relpath, inside --maps (as evaluate
    # --save-maps writes it), never outside
    with pytest.raises(ValueError, match="missing map") as info:
        load_scoremap(maps, "../ds/metadata/image_ids")
    assert str(maps) in str(info.value) and "/../" not in str(info.value)


@pytest.mark.parametrize("args, option", [
    (["--fixed-threshold", "nan"], "--fixed-threshold"), (["--fixed-threshold", "0.205"], "--fixed-threshold"),
    (["--fixed-threshold", "2"], "--fixed-threshold"), (["--calibrate", "nan"], "--calibrate"),
    (["--calibrate", "inf"], "--calibrate"), (["--workers", "-1"], "--workers"),
    (["--cam-curve-interval", "nan"], "--cam-curve-interval"),
    (["--cam-curve-interval", "0"], "--cam-curve-interval"),
    (["--cam-curve-interval", "1.5"], "--cam-curve-interval"),
    (["--cam-curve-interval", "1e-9"], "--cam-curve-interval"),
])
def test_bad_settings_exit_2_with_the_option_named(synth_with_maps, tmp_path, capsys, args, option):
    root, _, maps = synth_with_maps
    out = tmp_path / "out"
    rc = main(["score", str(root), "--split", "test", "--maps", str(maps), "--out", str(out)] + args)
    err = capsys.readouterr().err
    assert rc == 2 and option in err and "Traceback" not in err
    assert not out.exists()  # refused before scoring anything


def test_protocol_block_says_what_score_did(synth_with_maps, tmp_path):
    root, _, maps = synth_with_maps
    for normalize in (False, True):
        out = tmp_path / f"out{normalize}"
        argv = ["score", str(root), "--split", "test", "--maps", str(maps), "--out", str(out),
                "--workers", "1", "--cam-curve-interval", "0.001", "--fixed-threshold", "0.3"]
        assert main(argv + (["--normalize"] if normalize else [])) == 0
        proto = json.loads((out / "report.json").read_text())["protocol"]
        assert proto["name"] == "maps" and proto["cam_curve_interval"] == 0.001
        assert proto["thresholds"] == 1000 and proto["fixed_threshold"] == 0.3
        assert proto["resize"].startswith("none")
        assert proto["normalization"].startswith("minmax" if normalize else "none")
        assert "int(float(c) * map_side / image_side)" in proto["gt_boxes"]
        assert "INTER_CUBIC" not in json.dumps(proto) and "stretch" not in json.dumps(proto)


# ---- box files (score --boxes) are validated field by field -------------------------------

_COCO = {"images": [{"id": 1, "file_name": "a.jpg", "camloc_path": "/d/a.jpg"}],
         "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}],
         "categories": [{"id": 1, "name": "x", "camloc_class_id": 3}]}


def _coco_text(**changes: object) -> str:
    import copy

    doc = copy.deepcopy(_COCO)
    for key, value in changes.items():
        part, _, field = key.partition("__")
        if field:
            doc[part][0][field] = value  # type: ignore[index]
        else:
            doc[part] = value  # type: ignore[assignment]
    return json.dumps(doc)


@pytest.mark.parametrize("text, says", [
    (_coco_text(images=5), r"images: expected a list, got 5"),
    (_coco_text(annotations=7), r"annotations: expected a list, got 7"),
    (_coco_text(images=[5]), r"images\[0\]: expected an object, got 5"),
    (_coco_text(annotations__score="high"), r"annotations\[0\]\.score: expected a finite number"),
    (_coco_text(annotations__score=None), r"annotations\[0\]\.score: .*got null"),
    (_coco_text(annotations__bbox=[0, 0, "w", 5]), r"annotations\[0\]\.bbox\[2\]"),
    (_coco_text(annotations__bbox=[0, 0, -1, 5]), r"annotations\[0\]\.bbox: width and height"),
    (_coco_text(annotations__image_id=2), r"annotations\[0\]\.image_id: 2 is not the id"),
    (_coco_text(images__camloc_path=5), r"images\[0\]\.camloc_path: expected a file path"),
    (_coco_text(images__file_name="a\x00.jpg"), r"images\[0\]\.file_name: .*NUL"),
    (_coco_text().replace('"image_id": 1,', '"image_id": 1e400,'),
     r"annotations\[0\]\.image_id: expected a whole number, got inf"),
    (_coco_text().replace('"camloc_class_id": 3', '"camloc_class_id": 1e999'),
     r"categories\[0\]\.camloc_class_id: expected a whole number, got inf"),
    (_coco_text().replace('"camloc_class_id": 3', '"camloc_class_id": NaN'),
     r"camloc_class_id: expected a whole number, got nan"),
    ('{"path": "/d/a.jpg", "class_ids": ["x"], "probs": [0.5]}\n',
     r"record 1 .*class_ids\[0\]: expected a whole number"),
    ('{"path": "/d/a.jpg", "class_ids": [1], "probs": [null]}\n', r"probs\[0\]: .*got null"),
    ('{"path": "/d/a.jpg", "class_ids": [1], "probs": [0.5], "boxes": [[0, 0, 1]]}\n',
     r"boxes\[0\]: expected 4 numbers"),
    ('{"path": "/d/\\u0000", "class_ids": []}\n', r"record 1 .*path: .*NUL"),
    (b'{"path": "/d/a.jpg", "class_ids": []}\n{"path": "/d/\xff.jpg", "class_ids": []}\n',
     r"not UTF-8"),
])
def test_malformed_box_files_are_refused_naming_record_and_field(tmp_path, text, says) -> None:
    from camloc.errors import ConfigError
    from camloc.evaluation.boxes import read_box_file

    p = tmp_path / "boxes.json"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        list(read_box_file(p))
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"--boxes {p}: ")
    assert re.search(says, message), message


def test_well_formed_box_file_reads() -> None:
    import tempfile

    from camloc.evaluation.boxes import read_box_file

    p = Path(tempfile.mkdtemp()) / "instances.json"
    p.write_text(json.dumps(_COCO))
    [e] = list(read_box_file(p))
    assert e.path == "/d/a.jpg" and e.boxes == {3: [(0.5, (0.0, 0.0, 5.0, 5.0))]}
