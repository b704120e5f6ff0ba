"""`camloc localizer fit` and `camloc evaluate --localizer/--tta` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", CAMLOC_PROGRESS="plain")
    return subprocess.run([sys.executable, "-m", "camloc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_fit_then_evaluate_with_the_localizer(loc_synth, tiny_dir, tmp_path):
    loc = tmp_path / "loc"
    r = run_cli("localizer", "fit", str(loc_synth), "--split", "train", "--model", str(tiny_dir),
                "--holdout", "25%", "--tta", "none", "--tta", "flip", "--out", str(loc),
                "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    man = json.loads((loc / "localizer.json").read_text())
    assert (loc / "head.npz").is_file() and man["fit"]["holdout"] == 0.25
    assert man["recommended"]["tta"] in ("none", "flip") and man["model"]["name"] == "tiny-avg"
    out = tmp_path / "ev"
    r = run_cli("evaluate", str(loc_synth), "--split", "train", "--model", str(tiny_dir),
                "--localizer", str(loc), "--out", str(out), "--device", "cpu", "--workers", "0",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["tta"] == man["recommended"]["tta"]
    assert rep["localization"]["calibrated"]["threshold"] == \
        pytest.approx(man["recommended"]["threshold"])
    assert rep["localizer"]["scored_fit_images"] == len(man["fit"]["fit_ids"])
    assert "not held-out" in r.stdout + r.stderr  # said on the terminal too
    # the evaluate report as the calibration of a run with another TTA: refused, one line, exit 2
    r = run_cli("evaluate", str(loc_synth), "--split", "train", "--model", str(tiny_dir),
                "--localizer", str(loc), "--tta", "scales=64:96", "--calibrate",
                str(out / "report.json"), "--out", str(tmp_path / "ev2"), "--device", "cpu",
                cwd=tmp_path)
    assert r.returncode == 2 and "--tta" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "ev2").exists()


@pytest.mark.slow
def test_usage_errors_are_one_line(loc_synth, tiny_dir, tmp_path):
    cases = [
        (["evaluate", str(loc_synth), "--localizer", str(tmp_path), "--model", str(tiny_dir)],
         "localizer.json"),
        (["evaluate", str(loc_synth), "--tta", "flop", "--model", str(tiny_dir)], "unknown item"),
        (["localizer", "fit", str(loc_synth), "--out", str(tmp_path / "o"), "--holdout", "150%",
          "--model", str(tiny_dir)], "--holdout"),
        (["localizer", "fit", str(loc_synth), "--out", str(tmp_path / "o"), "--kind", "ddt",
          "--model", str(tiny_dir)], "--kind"),
    ]
    for args, needle in cases:
        r = run_cli(*args, "--split", "train", "--out" if "--out" not in args else "--device",
                    str(tmp_path / "e") if "--out" not in args else "cpu", cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "e").exists() and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_explain_with_localizer_and_tta_records_them(loc_synth, tiny_dir, tmp_path):
    import camloc
    from camloc.localizer import fit_localizer, save_localizer

    ds = open_dataset_train(loc_synth)
    model = camloc.load_model(str(tiny_dir), device="cpu")
    loc = save_localizer(fit_localizer(model, ds, combines=[("product", 1.0)], ttas=["none"]),
                         tmp_path / "loc")
    photos = [str(s.path) for s in ds.samples[:3]]
    out = tmp_path / "ex"
    r = run_cli("explain", *photos, "--model", str(tiny_dir), "--localizer", str(loc), "--tta",
                "flip", "--format", "coco", "--out", str(out), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "manifest.json").read_text())
    st = man["settings"]
    assert st["tta"] == "flip" and st["localizer"]["key"] == camloc.localizer.load_localizer(
        loc).key
    assert st["normalization"] == "minmax" and man["threshold_source"]["kind"] == "localizer"
    assert (out / "instances.json").is_file() or any(out.glob("*.json"))
    # resuming with another TTA is refused (the maps would differ)
    r = run_cli("explain", *photos, "--model", str(tiny_dir), "--localizer", str(loc),
                "--out", str(out), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 2 and "tta" in r.stderr, r.stderr


def open_dataset_train(root):
    from camloc.data.datasets import open_dataset

    return open_dataset(root, split="train")
