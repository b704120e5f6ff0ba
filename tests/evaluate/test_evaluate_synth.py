"""`evaluate` on a synthetic set: a corrupt image is reported and the rest scored; masks give PxAP."""

from __future__ import annotations

import json

import pytest

from camloc.cli import main
from camloc.data.datasets import open_dataset
from camloc.data.synth import make_synth


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synth(tmp_path_factory.mktemp("s") / "data", classes=3, images=24, size=64, seed=1,
                      test_fraction=0.5)


def test_corrupt_image_is_reported_and_the_rest_scored(synth_root, tiny_model_dir, tmp_path):
    ds = open_dataset(synth_root, split="test")
    victim = ds.samples[0].path
    victim.write_bytes(victim.read_bytes()[:40])  # truncated PNG
    out = tmp_path / "eval"
    rc = main(["evaluate", str(synth_root), "--split", "test", "--out", str(out), "--device", "cpu",
               "-m", str(tiny_model_dir), "--workers", "0", "--gallery", "1", "--batch-size", "5"])
    assert rc == 1
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"scored": len(ds.samples) - 1, "failed": 1}
    assert report["failed"][0]["image_id"] == ds.samples[0].image_id
    assert report["localization"]["count"] == len(ds.samples) - 1
    assert 0.0 <= report["pxap"]["pxap"] <= 100.0 and "piou" in report["pxap"]
    assert (out / "report.html").stat().st_size > 1000


def test_bad_protocol_and_unlabelled_data(synth_root, tmp_path):
    assert main(["evaluate", str(synth_root), "--split", "test", "--protocol", "nope",
                 "--out", str(tmp_path), "--device", "cpu"]) == 2
