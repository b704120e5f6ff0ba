"""`score` on maps made outside camloc: validation of each map, sharded processes == one."""

from __future__ import annotations

import json

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
