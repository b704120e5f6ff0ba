"""`camloc explain --method M --layer L`: every engine method through the bulk pipeline, the
method and resolved layers in results.jsonl and the manifest, method/layer/options as resume
settings, and the refusals (bad layer, exact CAM on a model without a GAP head) as exit 2.

The CLI runs as a subprocess where the exit code and message are the point; the other checks run
`main()` in-process on the tiny 32x32 model (a fraction of a second each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camloc.cams.catalog import CATALOG
from camloc.cli import main

REPO = Path(__file__).resolve().parents[2]


def camloc_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "camloc", *[str(a) for a in args]], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_gradient_method_at_a_named_layer_subprocess(tiny_model, small_images, tmp_path):
    out = tmp_path / "o"
    r = camloc_cli("explain", small_images, "-m", tiny_model, "--device", "cpu", "-k", "2",
                   "--method", "GradCAM++", "--layer", "features.block3", "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    recs = lines(out / "results.jsonl")
    assert len(recs) == 2
    assert {(x["method"], tuple(x["layers"])) for x in recs} == {("gradcam++", ("features.block3",))}
    assert all(len(x["boxes"]) == 2 and (out / x["overlay"]).is_file() for x in recs)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "gradcam++" and manifest["layers"] == ["features.block3"]
    assert manifest["settings"]["method"] == "gradcam++"
    assert manifest["settings"]["layers"] == ["features.block3"]


def test_bad_layer_is_a_usage_error_naming_it(tiny_model, small_images, tmp_path):
    out = tmp_path / "o"
    r = camloc_cli("explain", small_images, "-m", tiny_model, "--device", "cpu",
                   "--method", "gradcam", "--layer", "features.block9", "-o", out, cwd=tmp_path)
    assert r.returncode == 2, r.stderr + r.stdout
    assert "features.block9" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()  # refused before the output folder is made


def test_exact_cam_refused_on_a_headless_model_others_work(samples_dir, tmp_path):
    """MobileNetV3 pools, then runs an MLP: no GAP -> linear head. Exact CAM is refused with the
    engine's message (exit 2, nothing written); a gradient method explains the same photo."""
    photo = samples_dir / "chelsea.jpg"
    base = ["explain", photo, "-m", "mobilenet_v3_small", "--weights", "none", "--device", "cpu"]
    r = camloc_cli(*base, "-o", tmp_path / "cam", cwd=tmp_path)
    assert r.returncode == 2, r.stderr + r.stdout
    assert "exact CAM needs global average pooling" in r.stderr
    assert "gradcam" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "cam").exists()
    out = tmp_path / "hirescam"
    assert main([str(a) for a in base] + ["-k", "1", "--method", "hirescam", "--no-overlays",
                                          "-o", str(out)]) == 0
    [rec] = lines(out / "results.jsonl")
    assert rec["method"] == "hirescam" and rec["layers"] and len(rec["boxes"]) == 1


@pytest.mark.parametrize("method", [m for m in CATALOG if m not in ("cam", "gradcam++")])
def test_every_method_runs_through_the_pipeline(method, tiny_model, small_images, tmp_path):
    out = tmp_path / "o"
    extra = ["--method-batch-size", "16"] if CATALOG[method].family == "perturbation" else []
    if method == "smoothgradcam++":
        extra = ["--smooth", "2"]
    assert main(["explain", str(small_images), "-m", str(tiny_model), "--device", "cpu", "-k",
                 "2", "--method", method, "--save-maps", "-o", str(out), *extra]) == 0
    recs = lines(out / "results.jsonl")
    assert len(recs) == 2 and {x["method"] for x in recs} == {method}
    assert {tuple(x["layers"]) for x in recs} == {("features",)}  # the model's default
    import numpy as np

    for x in recs:
        maps = np.load(out / x["maps"])
        assert maps.shape == (2, 32, 32) and np.isfinite(maps).all()


def test_method_layer_and_options_are_resume_settings(tiny_model, small_images, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["explain", str(small_images), "-m", str(tiny_model), "--device", "cpu", "-k", "1",
            "--no-overlays", "-o", str(out)]
    assert main([*base, "--method", "gradcam", "--smooth", "2"]) == 0
    capsys.readouterr()
    assert main([*base, "--method", "hirescam", "--smooth", "2"]) == 2
    assert "method 'gradcam' -> 'hirescam'" in capsys.readouterr().err
    assert main([*base, "--method", "gradcam", "--smooth", "3"]) == 2
    assert "method_options" in capsys.readouterr().err
    assert main([*base, "--method", "gradcam", "--smooth", "2", "--layer",
                 "features.block2"]) == 2
    assert "layers ['features'] -> ['features.block2']" in capsys.readouterr().err
    # the default layer given by name is the same setting; the masks' batch size is not one
    assert main([*base, "--method", "gradcam", "--smooth", "2", "--layer", "features",
                 "--method-batch-size", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == 2 and manifest["counts"]["explained"] == 0


def test_method_usage_errors(tiny_model, small_images, tmp_path, capsys):
    base = ["explain", str(small_images), "-m", str(tiny_model), "--device", "cpu",
            "-o", str(tmp_path / "o")]
    assert main([*base, "--method", "nosuchcam"]) == 2
    assert "nosuchcam" in capsys.readouterr().err
    assert main([*base, "--method", "scorecam", "--smooth", "4"]) == 2
    assert "only gradient methods" in capsys.readouterr().err
    assert main([*base, "--method", "cam", "--layer", "features.block2"]) == 2
    assert "exact CAM is defined only at the layer" in capsys.readouterr().err
    assert main([*base, "--method", "gradcam", "--layer", "features,"]) == 2
    assert not (tmp_path / "o").exists()
