"""`torchrun --nproc_per_node=2 -m camloc explain` (gloo, CPU): the merged outputs are byte for
byte those of one process; a re-run resumes (nothing redone). Resuming the parts of a killed
run is tested in test_explain_pseudo.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from camloc.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def photos(tmp_path, samples_dir) -> Path:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    names = sorted(samples_dir.glob("*.jpg"))
    for i in range(9):
        shutil.copy(names[i % len(names)], (d / "sub" if i % 4 == 0 else d) / f"p{i}.jpg")
    (d / "p5.jpg").write_bytes(b"broken")  # one failure, in rank 1's share
    return d


def outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", ".camloc.lock")}


def test_two_processes_write_what_one_writes(tiny_model, photos, tmp_path, run_torchrun):
    args = [str(photos), "-m", str(tiny_model), "-k", "3", "--device", "cpu", "--batch-size", "2",
            "--format", "coco,yolo,voc", "--multi"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["explain", *args, "-o", str(one)]) == 1
    r = run_torchrun(["explain", *args, "-o", str(two)], nproc=2)
    assert r.returncode != 0 and "8 explained" in r.stderr, r.stderr[-3000:]  # exit 1 on rank 0
    assert "1 failed, of 9 found" in r.stderr
    assert r.stderr.count("camloc explain") == 1  # rank 0 reports for both
    a, b = outputs(one), outputs(two)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name
    assert not (two / "parts").exists()
    m = json.loads((two / "manifest.json").read_text())
    assert (m["world_size"], m["status"], m["counts"]["explained"], m["counts"]["failed"]) == (
        2, "complete", 8, 1)
    # the same command again: every image is skipped, the outputs stay the same
    r = run_torchrun(["explain", *args, "-o", str(two)], nproc=2)
    assert "0 explained, 8 skipped" in r.stderr, r.stderr[-3000:]
    assert outputs(two) == a
