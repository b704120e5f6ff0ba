"""`camloc export` / `camloc.export.to_onnx`: the exported CAM graph run by onnxruntime equals
camloc's torch path (logits, classes, raw maps, normalised scoremaps, boxes), on tiny models
(plain GAP, LayerNorm-folded head) and on the default model with dev photos; models without a
GAP head are refused as `--method cam` refuses them."""

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
from camloc.cams import CAM, normalize, upsample
from camloc.errors import ConfigError, UnsupportedHeadError
from camloc.export import to_onnx

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a dev extra (camloc[onnx])")

REPO = Path(__file__).resolve().parents[2]
TOL = 1e-4


class _LnHead(nn.Module):
    """conv trunk -> GAP -> LayerNorm -> Linear (the ConvNeXt head shape: folded exactly)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.GELU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 6)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.features(x).mean(dim=(2, 3))))


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _tight_box(m: np.ndarray, threshold: float) -> list[float]:
    """The box of every pixel above threshold x max (camloc.localize.threshold_mask), edges."""
    from camloc.localize.boxes import threshold_mask

    ys, xs = np.nonzero(threshold_mask(m, threshold))
    if len(ys) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _gapnet() -> nn.Module:
    from camloc.models import GapNet

    torch.manual_seed(0)
    feats = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
    return GapNet(feats, nn.Linear(8, 7))


@pytest.fixture(scope="module")
def models():
    gap = camloc.wrap(_gapnet(), input_size=(48, 40))
    ln = camloc.wrap(_LnHead(), input_size=(40, 40))
    assert ln.head is not None and ln.head.norm is not None  # the fold is what is tested
    return {"gap": gap, "ln": ln}


@pytest.mark.parametrize("which", ["gap", "ln"])
@pytest.mark.parametrize("normalization", ["max", "minmax"])
def test_graph_equals_torch(models, which, normalization, tmp_path):
    model = models[which]
    res = to_onnx(model, tmp_path / "m.onnx", top_k=3, normalization=normalization,
                  threshold=0.3)
    sess = _session(res.path)
    assert [i.name for i in sess.get_inputs()] == ["images"]  # 'classes' has a default
    assert [o.name for o in sess.get_outputs()] == ["logits", "top_classes", "top_probs", "maps",
                                                   "scoremaps", "boxes"]
    hw = model.spec.preprocess.input_size
    x = torch.randn(5, 3, *hw, generator=torch.Generator().manual_seed(1))
    logits, ids, probs, maps, smaps, boxes = sess.run(None, {"images": x.numpy()})
    ref = CAM(model)(x, classes=torch.from_numpy(ids))
    assert np.array_equal(ids, ref.logits.topk(3, dim=1).indices.numpy())
    assert np.abs(logits - ref.logits.numpy()).max() < TOL
    assert np.abs(probs - ref.probs.gather(1, ref.class_ids).numpy()).max() < 1e-5
    assert np.abs(maps - ref.maps.numpy()).max() < TOL * max(1.0, float(ref.maps.abs().max()))
    # exact CAM: the mean of each raw map plus the per-image bias is the logit
    assert np.abs(maps.mean((2, 3)) + ref.bias.numpy()
                  - np.take_along_axis(logits, ids, 1)).max() < 1e-4
    want = normalize(upsample(ref.maps, hw, "bicubic"), normalization).numpy()
    assert smaps.shape == (5, 3, *hw) and np.abs(smaps - want).max() < TOL
    for i in range(5):
        for j in range(3):
            assert boxes[i, j].tolist() == _tight_box(want[i, j], 0.3)


def test_classes_input_picks_the_maps_and_batch_is_free(models, tmp_path):
    model = models["gap"]
    sess = _session(to_onnx(model, tmp_path / "m.onnx", top_k=2, class_input=True).path)
    assert [i.name for i in sess.get_inputs()] == ["images"]  # 'classes' has a default
    x = torch.randn(4, 3, 48, 40, generator=torch.Generator().manual_seed(2))
    per_image = np.array([[6, 0], [1, 1], [2, 5], [3, 4]], dtype=np.int64)
    _, ids, _, maps, _, _ = sess.run(None, {"images": x.numpy(), "classes": per_image})
    ref = CAM(model)(x, classes=torch.from_numpy(per_image))
    assert np.array_equal(ids, per_image)
    assert np.abs(maps - ref.maps.numpy()).max() < TOL
    # a -1 in slot j takes the image's j-th best class; one row applies to every image
    mixed = np.array([[4, -1, -1]], dtype=np.int64)
    _, ids, _, maps, _, _ = sess.run(None, {"images": x[:3].numpy(), "classes": mixed})
    top = CAM(model)(x[:3], classes=3).class_ids.numpy()
    assert (ids[:, 0] == 4).all() and ids[:, 1:].tolist() == top[:, 1:].tolist()
    # not fed: the top-2
    top_classes, logits = sess.run(["top_classes", "logits"], {"images": x[:1].numpy()})
    assert logits.shape == (1, 7) and top_classes.tolist() == top[:1, :2].tolist()


def test_static_batch_and_plain_graph(models, tmp_path):
    model = models["gap"]
    res = to_onnx(model, tmp_path / "s.onnx", dynamic_batch=False, scoremaps=False)
    sess = _session(res.path)
    assert sess.get_inputs()[0].shape == [1, 3, 48, 40]
    assert [o.name for o in sess.get_outputs()] == ["logits", "top_classes", "top_probs", "maps"]
    plain = to_onnx(model, tmp_path / "p.onnx", maps=False)
    x = torch.randn(2, 3, 48, 40)
    (logits,) = _session(plain.path).run(None, {"images": x.numpy()})
    assert np.abs(logits - model.logits(x).detach().numpy()).max() < TOL


def test_spec_beside_the_graph(models, tmp_path):
    model = models["ln"]
    res = to_onnx(model, tmp_path / "out" / "cam.onnx", top_k=2, input_size="32x48")
    spec = json.loads((tmp_path / "out" / "cam.json").read_text())
    assert res.spec_path == tmp_path / "out" / "cam.json" and spec == res.spec
    assert spec["preprocess"]["input_size"] == [32, 48]
    assert spec["preprocess"]["mean"] == list(model.spec.preprocess.mean)
    assert spec["class_names"] == model.spec.class_names and spec["top_k"] == 2
    assert spec["feature_grid"] == [8, 12] and spec["layer"] == model.head.feature_name
    assert set(spec["outputs"]) == {"logits", "top_classes", "top_probs", "maps", "scoremaps",
                                    "boxes"}
    import hashlib

    assert spec["sha256"] == hashlib.sha256(res.path.read_bytes()).hexdigest()
    sess = _session(res.path)
    assert sess.get_inputs()[0].shape[1:] == [3, 32, 48]


def test_models_without_a_gap_head_are_refused_as_cam_is(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 16),
                        nn.ReLU(), nn.Linear(16, 3))
    model = camloc.wrap(net, input_size=(16, 16))
    with pytest.raises(UnsupportedHeadError) as exc:
        to_onnx(model, tmp_path / "x.onnx")
    with pytest.raises(UnsupportedHeadError) as same:
        CAM(model)
    assert str(exc.value) == str(same.value) and "gradcam" in str(exc.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kw, word", [({"top_k": 0}, "top_k"), ({"top_k": 8}, "top_k"),
                                      ({"opset": 9}, "opset"), ({"input_size": "12xq"}, "size"),
                                      ({"normalization": "l2"}, "normalization"),
                                      ({"threshold": 1.5}, "threshold")])
def test_bad_options_name_the_option(models, tmp_path, kw, word):
    with pytest.raises(ConfigError, match=word):
        to_onnx(models["gap"], tmp_path / "m.onnx", **kw)
    with pytest.raises(ConfigError, match=".onnx"):
        to_onnx(models["gap"], tmp_path / "m.txt")


def test_missing_onnx_says_how_to_install(models, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnx", "onnxruntime") else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'camloc\[onnx\]'"):
        to_onnx(models["gap"], tmp_path / "m.onnx")
    from camloc.runtime_onnx import OnnxCAM

    with pytest.raises(ConfigError, match=r"--runtime onnx.*pip install"):
        OnnxCAM(models["gap"], tmp_path / "m.onnx")


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "camloc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _tiny_folder(root: Path) -> Path:
    from camloc.models.archs import build_arch
    from camloc.train.checkpoint import write_model_dir

    torch.manual_seed(0)
    net = build_arch("tiny-cnn", num_classes=4, pool="avg", pretrained=False, width=8)
    spec = {"format": "camloc-model", "version": 1, "name": "tiny", "arch": "tiny-cnn",
            "arch_kwargs": {"width": 8}, "num_classes": 4, "class_names": list("abcd"),
            "pool": "avg", "preprocess": {"input_size": [32, 32], "interpolation": "bilinear"}}
    return write_model_dir(root / "tiny", net, spec)


@pytest.mark.slow
def test_cli_exports_and_refuses(tmp_path):
    folder = _tiny_folder(tmp_path)
    r = _cli(["export", str(folder), "--top-k", "2", "--size", "40x40", "--out", "g/t.onnx"],
             tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "wrote" in r.stderr and "scoremaps" in r.stderr
    spec = json.loads((tmp_path / "g" / "t.json").read_text())
    assert spec["class_names"] == list("abcd") and spec["preprocess"]["input_size"] == [40, 40]
    model = camloc.load_model(str(folder))
    x = torch.randn(3, 3, 40, 40)
    got = _session(tmp_path / "g" / "t.onnx").run(["logits", "maps"], {"images": x.numpy()})
    ref = CAM(model)(x, classes=2)
    assert np.abs(got[0] - ref.logits.numpy()).max() < TOL
    assert np.abs(got[1] - ref.maps.numpy()).max() < TOL * max(1.0, float(ref.maps.abs().max()))
    # a model without a GAP head: exit 2, one line naming what works, nothing written
    r = _cli(["export", "-m", "mobilenet_v3_small", "--weights", "none", "--out", "v.onnx"],
             tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: mobilenet_v3_small: exact CAM needs global average pool")
    assert "gradcam" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "v.onnx").exists() and not (tmp_path / "v.json").exists()
    r = _cli(["export", str(folder), "--top-k", "9", "--out", "t9.onnx"], tmp_path)
    assert r.returncode == 2 and "top_k=9" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.devset
@pytest.mark.slow
def test_default_model_on_dev_photos(default_model, dev_set, tmp_path):
    """The acceptance check: on real photos, logits and normalised maps of onnxruntime equal
    torch's within 1e-4 (absolute), and so do the boxes the graph draws."""
    from camloc.data.images import batch_images, load_image

    ids = (dev_set / "metadata" / "image_ids.txt").read_text().split()[:6]
    x, _ = batch_images([load_image(dev_set / i) for i in ids], default_model.spec.preprocess)
    res = to_onnx(default_model, tmp_path / "lite0.onnx")
    logits, top, _, maps, smaps, boxes = _session(res.path).run(None, {"images": x.numpy()})
    ref = CAM(default_model)(x, classes=torch.from_numpy(top))
    assert np.abs(logits - ref.logits.numpy()).max() < TOL
    assert np.array_equal(top, ref.logits.topk(5, dim=1).indices.numpy())
    want = normalize(upsample(ref.maps, (224, 224), "bicubic"), "max").numpy()
    assert np.abs(smaps - want).max() < TOL
    assert np.abs(normalize(torch.from_numpy(maps), "minmax").numpy()
                  - normalize(ref.maps, "minmax").numpy()).max() < TOL
    agree = sum(boxes[i, j].tolist() == _tight_box(want[i, j], 0.2)
                for i in range(len(ids)) for j in range(5))
    assert agree >= len(ids) * 5 - 1  # a pixel at the threshold may flip by 1e-6


def test_cli_in_process(tmp_path, capsys, monkeypatch):
    """The verb's options reach to_onnx (quick; the subprocess run above is marked slow)."""
    from camloc.cli import main

    folder = _tiny_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(folder), "--top-k", "3", "--static-batch", "--no-scoremaps",
                 "--classes-input", "--normalization", "minmax"]) == 0
    spec = json.loads((tmp_path / "tiny.json").read_text())  # default --out: <model>.onnx
    assert spec["top_k"] == 3 and not spec["dynamic_batch"] and "classes" in spec["inputs"]
    assert list(spec["outputs"]) == ["logits", "top_classes", "top_probs", "maps"]
    capsys.readouterr()
    assert main(["export", str(folder), "--out", "g.txt"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err == "error: --out g.txt: expected the .onnx file to write"
    assert main(["export", str(folder), "-m", "resnet18"]) == 2
    assert "a model given twice" in capsys.readouterr().err
