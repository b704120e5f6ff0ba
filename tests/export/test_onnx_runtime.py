"""The onnxruntime backend: `OnnxCAM` returns what `CAM` returns (logits, classes, raw maps, bias)
for every class selection; graphs are exported to a cache once; `camloc evaluate --runtime onnx`
gives the torch run's figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import camloc
from camloc.cams import CAM
from camloc.errors import ConfigError

pytest.importorskip("onnxruntime", reason="onnxruntime is a dev extra (camloc[onnx])")

from camloc.runtime_onnx import OnnxCAM, make_runtime_engine  # noqa: E402
from camloc.export import to_onnx  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _net(seed: int = 0, classes: int = 6) -> nn.Module:
    from camloc.models import GapNet

    torch.manual_seed(seed)
    feats = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
    return GapNet(feats, nn.Linear(8, classes))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CAMLOC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.fixture
def model():
    return camloc.wrap(_net(), input_size=(32, 48))


@pytest.mark.parametrize("classes", [3, "top2", "all", [5, 0], [[1], [2], [3], [4]]])
def test_engine_returns_what_cam_returns(model, cache, classes):
    engine = OnnxCAM(model)
    x = torch.randn(4, 3, 32, 48, generator=torch.Generator().manual_seed(5))
    got, want = engine(x, classes=classes), CAM(model)(x, classes=classes)
    assert torch.equal(got.class_ids, want.class_ids)
    assert (got.logits - want.logits).abs().max() < 1e-4
    assert (got.maps - want.maps).abs().max() < 1e-4 and got.maps.dtype == torch.float32
    assert (got.bias - want.bias).abs().max() < 1e-4
    assert got.method == "cam" and got.layers == want.layers
    assert engine.name == "cam" and not engine.needs_grad
    assert [p.suffix for p in sorted(cache.iterdir())] == [".json", ".onnx"]


def test_targets(model, cache):
    from camloc.targets import ClassTarget, Margin

    engine = OnnxCAM(model)
    x = torch.randn(3, 3, 32, 48)
    got, want = engine(x, classes=ClassTarget([4, 0, 2])), CAM(model)(x, classes=[[4], [0], [2]])
    assert got.class_ids.tolist() == [[4], [0], [2]] and (got.maps - want.maps).abs().max() < 1e-4
    with pytest.raises(ConfigError, match="class logits only"):
        engine(x, classes=Margin(1))
    with pytest.raises(ConfigError, match="3 images"):
        engine(x, classes=ClassTarget([1, 2]))


def test_cache_is_reused_and_keyed_by_weights(model, cache):
    first = OnnxCAM(model).path
    stamp = first.stat().st_mtime_ns
    assert OnnxCAM(model).path == first and first.stat().st_mtime_ns == stamp
    with torch.no_grad():
        model.module.classifier.weight.mul_(2.0)
    second = OnnxCAM(model)
    assert second.path != first and len(list(cache.glob("*.onnx"))) == 2
    x = torch.randn(2, 3, 32, 48)
    assert (second(x, classes=2).maps - CAM(model)(x, classes=2).maps).abs().max() < 1e-4


def test_exported_file_checks(model, tmp_path, cache):
    plain = to_onnx(model, tmp_path / "top3.onnx", top_k=3, scoremaps=False)
    engine = OnnxCAM(model, plain.path)
    x = torch.randn(3, 3, 32, 48)
    assert torch.equal(engine(x, classes=2).class_ids, CAM(model)(x, classes=2).class_ids)
    with pytest.raises(ConfigError, match="--classes-input"):
        engine(x, classes=[1])
    with pytest.raises(ConfigError, match=r"exported for \(N, 3, 32, 48\)"):
        engine(torch.randn(1, 3, 40, 40))
    with pytest.raises(ConfigError, match="exported for 32x48 inputs, not 40x40"):
        OnnxCAM(model, plain.path, input_size=(40, 40))
    other = camloc.wrap(_net(seed=1), input_size=(32, 48))
    with pytest.raises(ConfigError, match="another model or weights"):
        OnnxCAM(other, plain.path)
    fewer = camloc.wrap(_net(classes=4), input_size=(32, 48))
    with pytest.raises(ConfigError, match="4 classes"):
        OnnxCAM(fewer, plain.path)
    (tmp_path / "top3.json").unlink()
    with pytest.raises(ConfigError, match="top3.json: missing"):
        OnnxCAM(model, plain.path)
    static = to_onnx(model, tmp_path / "one.onnx", dynamic_batch=False, class_input=True)
    got = OnnxCAM(model, static.path)(x, classes=[[0], [1], [2]])  # row by row
    assert (got.maps - CAM(model)(x, classes=[[0], [1], [2]]).maps).abs().max() < 1e-4


def test_runtime_option_values(model, cache):
    assert make_runtime_engine(model, "torch") is None
    assert isinstance(make_runtime_engine(model, "onnx"), OnnxCAM)
    with pytest.raises(ConfigError, match="exact CAM only"):
        make_runtime_engine(model, "onnx", "gradcam")
    with pytest.raises(ConfigError, match="expected torch, onnx"):
        make_runtime_engine(model, "tensorrt")
    with pytest.raises(ConfigError, match="no such file"):
        make_runtime_engine(model, str(cache / "none.onnx"))


@pytest.fixture(scope="module")
def synth_and_model(tmp_path_factory):
    from camloc.data.open import open_dataset
    from camloc.data.synth import make_synth
    from camloc.models.archs import build_arch
    from camloc.train.checkpoint import write_model_dir

    root = tmp_path_factory.mktemp("ort-eval")
    data = make_synth(root / "data", classes=3, images=24, size=64, seed=1, test_fraction=0.5)
    torch.manual_seed(0)
    net = build_arch("tiny-cnn", num_classes=3, width=8)
    spec = {"arch": "tiny-cnn", "num_classes": 3, "arch_kwargs": {"width": 8}, "name": "tiny",
            "class_names": list(open_dataset(data, split="test").class_names),
            "preprocess": {"input_size": [64, 64], "fit": "stretch", "interpolation": "bilinear",
                           "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    return data, write_model_dir(root / "tiny", net, spec)


def test_evaluate_onnx_equals_torch(synth_and_model, tmp_path, cache):
    from camloc.evaluation.run import open_eval_dataset, run_evaluation

    data, folder = synth_and_model
    ds = open_eval_dataset(data, split="test")
    runs = {rt: run_evaluation(ds, tmp_path / rt, model=str(folder), runtime=rt, workers=0,
                               device="cpu", gallery=1).report for rt in ("torch", "onnx")}
    t, o = runs["torch"], runs["onnx"]
    assert abs(t["localization"]["maxboxacc_v2"]["value"]
               - o["localization"]["maxboxacc_v2"]["value"]) <= 0.01
    assert t["classification"] == o["classification"]
    assert o["method"]["runtime"]["name"] == "onnxruntime" and "runtime" not in t["method"]
    with pytest.raises(ConfigError, match="--layer"):
        run_evaluation(ds, tmp_path / "x", model=str(folder), runtime="onnx", layer="features",
                       workers=0, device="cpu")


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "camloc", *args], env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_evaluate_cli_runtime_onnx(synth_and_model, tmp_path):
    data, folder = synth_and_model
    env = {"CAMLOC_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "o"
    r = _cli(["evaluate", str(data), "--split", "test", "-m", str(folder), "--workers", "0",
              "--device", "cpu", "--runtime", "onnx", "-o", str(out)], env)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["method"]["runtime"]["graph"].startswith(str(tmp_path / "cache" / "onnx"))
    r = _cli(["evaluate", str(data), "--split", "test", "-m", str(folder), "--workers", "0",
              "--runtime", "onnx", "--method", "gradcam", "-o", str(tmp_path / "g")], env)
    assert r.returncode == 2 and "exact CAM only" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.devset
@pytest.mark.slow
def test_devset_maxboxacc_v2_with_onnxruntime(default_model, dev_set, tmp_path, monkeypatch):
    """The dev set's MaxBoxAccV2 with the onnxruntime graph is the README's torch figure."""
    from camloc.data.open import open_dataset
    from camloc.evaluation.evaluate import evaluate_state, build_report

    monkeypatch.setenv("CAMLOC_CACHE", str(tmp_path / "cache"))
    ds = open_dataset(dev_set)
    engine = OnnxCAM(default_model)
    state = evaluate_state(default_model, ds, batch_size=32, workers=2, method=engine)
    rep = build_report(state, default_model, ds, "wsol", 0.01)
    assert abs(rep["localization"]["maxboxacc_v2"]["value"] - 64.25) <= 0.01  # README, torch
    assert round(rep["classification"]["top1"], 2) == 81.80


def test_explain_runtime_onnx_equals_torch(tmp_path, cache, samples_dir, capsys):
    """`camloc explain --runtime onnx` writes the torch run's classes, probabilities and boxes."""
    from camloc.cli import main
    from camloc.models.archs import build_arch
    from camloc.train.checkpoint import write_model_dir

    torch.manual_seed(0)
    net = build_arch("tiny-cnn", num_classes=5, pool="avg", pretrained=False, width=8)
    spec = {"format": "camloc-model", "version": 1, "name": "tiny", "arch": "tiny-cnn",
            "arch_kwargs": {"width": 8}, "num_classes": 5, "class_names": list("abcde"),
            "pool": "avg", "preprocess": {"input_size": [48, 48], "interpolation": "bilinear"}}
    folder = write_model_dir(tmp_path / "tiny", net, spec)
    recs = {}
    for rt in ("torch", "onnx"):
        rc = main(["explain", str(samples_dir), "-m", str(folder), "--top-k", "3",
                   "--no-overlays", "--device", "cpu", "--runtime", rt, "--out",
                   str(tmp_path / rt)])
        assert rc == 0, capsys.readouterr().err
        recs[rt] = [json.loads(x) for x in (tmp_path / rt / "results.jsonl").read_text()
                    .splitlines()]
    assert len(recs["torch"]) == len(recs["onnx"]) == 4
    for t, o in zip(recs["torch"], recs["onnx"]):
        assert t["path"] == o["path"] and t["class_ids"] == o["class_ids"]
        assert np.allclose(t["probs"], o["probs"], atol=1e-5)
        assert np.allclose(t["boxes"], o["boxes"], atol=0.5)
    assert list(cache.glob("tiny-48x48-*.onnx"))
    capsys.readouterr()
    assert main(["explain", str(samples_dir), "-m", str(folder), "--runtime", "onnx",
                 "--method", "gradcam", "--out", str(tmp_path / "g")]) == 2
    assert "exact CAM only" in capsys.readouterr().err
