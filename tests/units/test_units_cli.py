"""``camloc units``: a real subprocess run, exit codes and messages, torchrun == one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camloc.cli import main

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _args(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["units", str(data), "--model", str(model), "--out", str(out), "--device", "cpu",
            "--top-images", "4", "--top-units", "3", "--batch-size", "5", "--workers", "0", *extra]


def test_cli_subprocess_writes_outputs(tiny_wsol, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "camloc",
                           *_args(tiny_wsol, tiny_model_dir, out, "--classes", "disk,2")],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "share of the class score" in proc.stderr and "unit purity" in proc.stderr
    rep = json.loads((out / "units.json").read_text())
    assert [c["name"] for c in rep["classes"]] == ["disk", "ring"]
    assert rep["counts"] == {"scored": 18, "failed": 0}
    assert rep["model"]["feature_layers"] and rep["world_size"] == 1
    sheets = {p.name for p in (out / "sheets").iterdir()}
    assert {"class_0000.png", "class_0002.png"} <= sheets
    assert {f"unit_{e['unit']:04d}.png" for c in rep["classes"] for e in c["by_contribution"]} \
        <= sheets
    html = (out / "units.html").read_text()
    assert "id='class-0'" in html and "sheets/class_0000.png" in html
    assert not (out / "errors.jsonl").exists()


def test_cli_exit_codes_and_messages(tiny_wsol, tiny_model_dir, tmp_path, units_data, capsys):
    out = tmp_path / "o"
    assert main(_args(tiny_wsol, tiny_model_dir, out, "--top-units", "0")) == 2
    assert "--top-units=0" in capsys.readouterr().err
    assert main(_args(tiny_wsol, tiny_model_dir, out, "--classes", "1", "--all")) == 2
    assert "--classes and --all" in capsys.readouterr().err
    assert main(_args(tiny_wsol, tiny_model_dir, out, "--layer", "features.block2")) == 2
    err = capsys.readouterr().err
    assert "--layer 'features.block2'" in err and "Omit --layer" in err
    assert main(_args(tiny_wsol, tiny_model_dir, out, "--classes", "zebra")) == 2
    assert "unknown class 'zebra'" in capsys.readouterr().err
    assert main(_args(tmp_path / "missing", tiny_model_dir, out)) == 2
    assert "dataset not found" in capsys.readouterr().err
    assert not out.exists()  # nothing written for a refused run
    # unlabelled images with one broken file: the run finishes, exit code 1
    photos = tmp_path / "photos"
    units_data.write_images(photos, 5)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert main(_args(photos, tiny_model_dir, out, "--no-sheets")) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "errors.jsonl" in str(list(out.iterdir()))
    rep = json.loads((out / "units.json").read_text())
    assert rep["classes"] == [] and rep["counts"] == {"scored": 5, "failed": 1}
    assert not (out / "sheets").exists()


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tiny_wsol, tiny_model_dir, tmp_path, run_torchrun):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_args(tiny_wsol, tiny_model_dir, one, "--no-sheets")) == 0
    proc = run_torchrun(_args(tiny_wsol, tiny_model_dir, two, "--no-sheets"), nproc=2,
                        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((one / "units.json").read_text())
    b = json.loads((two / "units.json").read_text())
    assert b["world_size"] == 2 and a["counts"] == b["counts"]
    assert sorted(p.name for p in (two / "state").iterdir()) == ["units-rank0-of2.pt",
                                                                  "units-rank1-of2.pt"]
    for ua, ub in zip(a["units"], b["units"]):
        assert [r["index"] for r in ua["top_images"]] == [r["index"] for r in ub["top_images"]]
        assert [r["region_box"] for r in ua["top_images"]] == \
            [r["region_box"] for r in ub["top_images"]]
        assert ua["threshold"] == pytest.approx(ub["threshold"], rel=1e-6)
    for ca, cb in zip(a["classes"], b["classes"]):
        assert [e["unit"] for e in ca["by_contribution"]] == \
            [e["unit"] for e in cb["by_contribution"]]
        assert ca["score_from_units"] == pytest.approx(cb["score_from_units"], abs=1e-6)
    assert a["summary"] == b["summary"]
