"""`camloc compare` as a user runs it: a subprocess on a synthetic set, and its usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Runs the CLI; registers the verb itself where camloc.cli's VERBS does not list it yet.
LAUNCH = ("import sys; from camloc import cli\n"
          "if 'compare' not in cli.VERBS:\n"
          "    from camloc.commands.compare import register; register(cli.app)\n"
          "sys.exit(cli.main(sys.argv[1:]))")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", LAUNCH, "compare", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_compare_writes_table_html_gallery_and_calibrates_on_another_split(synth_root, tiny_dir,
                                                                          tmp_path):
    out = tmp_path / "cmp"
    r = run_cli(str(synth_root), "--split", "train", "--model", str(tiny_dir), "--methods",
                "cam,gradcam", "--calibration-split", "test", "--steps", "4", "--road", "50",
                "--gallery", "2", "--out", str(out), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "compare.json").read_text())
    assert list(rep["methods"]) == ["cam", "gradcam"]
    assert rep["counts"] == {"scored": 12, "failed": 0}
    assert rep["calibration"]["split"] == "test" and rep["calibration"]["images"] == 4
    for name, m in rep["methods"].items():
        cal = m["localization"]["calibrated"]
        # the threshold chosen on the test split is the one the train figures are taken at
        assert cal["threshold"] == rep["calibration"]["thresholds"][name] == m["threshold"]
        assert set(m["faithfulness"]) >= {"average_drop", "increase_in_confidence", "deletion_auc",
                                          "insertion_auc", "road_morf", "road_lerf"}
        assert m["faithfulness_images"] == 12 and "pxap" in m
        assert m["seconds_per_image"]["maps"] > 0
    md = (out / "compare.md").read_text()
    assert md.count("\n| cam |") == 1 and "| gradcam |" in md and "calibration pass on test" in md
    html = (out / "compare.html").read_text()
    pngs = sorted(p.name for p in (out / "gallery").iterdir())
    assert len(pngs) == 4 and all(f"gallery/{p}" in html for p in pngs)
    assert len(rep["gallery"]) == 2
    assert rep["gallery"][0]["spread"] >= rep["gallery"][1]["spread"]
    assert "| cam |" in r.stdout  # the table is printed too


def test_usage_errors_exit_2_with_one_line(synth_root, tmp_path):
    r = run_cli(str(synth_root), "--methods", "cam,gradcamz", cwd=tmp_path)
    assert r.returncode == 2 and "gradcamz" in r.stderr and "scorecam" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(str(synth_root), "--methods", "cam", "--tta", "flip,scales=224x288", cwd=tmp_path)
    assert r.returncode == 2 and "scales" in r.stderr and "Traceback" not in r.stderr
    # torchvision's MobileNetV3 head is Linear -> Hardswish -> Linear: no exact CAM
    r = run_cli(str(synth_root), "--split", "test", "--methods", "cam,gradcam", "--model",
                "tv:mobilenet_v3_small", "--weights", "none", "--device", "cpu", "--out",
                str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "cam" in r.stderr and "gradcam++" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "compare.json").exists()


def test_an_off_grid_threshold_names_the_option_it_came_from(synth_root, tiny_dir, tmp_path):
    for opt in ("--calibrate", "--fixed-threshold"):
        r = run_cli(str(synth_root), "--split", "test", "--model", str(tiny_dir), "--methods",
                    "cam", opt, "0.305", "--no-faithfulness", "--device", "cpu", "--out",
                    str(tmp_path / "o"), cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: {opt}") and "0.305" in line and "grid" in line, line
        assert "Traceback" not in r.stderr
