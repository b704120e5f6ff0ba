"""Pooled features: the classifier's own input, cached by model and image content."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from camloc.data.datasets import open_dataset
from camloc.models.heads import find_gap_head
from camloc.models.loader import CamModel
from camloc.models.spec import ModelSpec, Preprocess
from camloc.probe import (apply_head, extract_features, fit_probe, model_key, pooled_features,
                          save_head)


@pytest.fixture
def folder_ds(tmp_path: Path, probe_data) -> Path:
    return probe_data.write_folder(tmp_path / "ds", per_class=3, size=64)


def test_features_are_the_classifier_input(default_model, folder_ds: Path) -> None:
    ds = open_dataset(folder_ds)
    feats = extract_features(default_model, ds, cache_dir=None, batch_size=4)
    assert feats.X.shape == (9, default_model.head.num_channels) and feats.X.dtype == np.float32
    assert feats.y.tolist() == [s.label for s in ds.samples]
    assert feats.ids == [s.image_id for s in ds.samples]
    assert feats.computed == 9 and feats.reused == 0 and feats.batches == 3
    X, y, ids = feats  # unpacks like a tuple
    # the model's own logits are W x + b on these vectors
    from camloc.data.images import batch_images, load_image

    x, _ = batch_images([load_image(s.path) for s in ds.samples[:2]],
                        default_model.spec.preprocess)
    with torch.no_grad():
        logits = default_model.module(x)
    clf = default_model.head.classifier
    rec = torch.from_numpy(X[:2]) @ clf.weight.detach().t() + clf.bias.detach()
    torch.testing.assert_close(rec, logits, rtol=1e-4, atol=1e-3)


def test_cache_is_reused_and_invalidated(default_model, folder_ds: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = extract_features(default_model, open_dataset(folder_ds), cache_dir=cache)
    assert first.computed == 9 and len(list(cache.rglob("*.npy"))) == 9
    assert (first.cache_dir / "model.json").is_file()

    def no_forward(*_a, **_k):
        raise AssertionError("a forward pass ran although every feature is cached")

    with monkeypatch.context() as m:
        m.setattr(default_model.head, "run", no_forward)
        second = extract_features(default_model, open_dataset(folder_ds), cache_dir=cache)
    assert second.computed == 0 and second.reused == 9 and second.batches == 0
    np.testing.assert_array_equal(second.X, first.X)

    # edit one image: only it is recomputed
    from PIL import Image

    target = folder_ds / "cat" / "001.png"
    Image.new("RGB", (64, 64), (250, 10, 10)).save(target)
    third = extract_features(default_model, open_dataset(folder_ds), cache_dir=cache)
    assert third.computed == 1 and third.reused == 8
    row = third.ids.index("cat/001.png")
    assert not np.allclose(third.X[row], first.X[row])
    # the key is the content: a copied dataset elsewhere is served from the cache
    shutil.copytree(folder_ds, tmp_path / "copy")
    fourth = extract_features(default_model, open_dataset(tmp_path / "copy"), cache_dir=cache)
    assert fourth.computed == 0 and fourth.reused == 9


def test_unreadable_images_are_reported_and_never_cached(default_model, folder_ds: Path,
                                                         tmp_path: Path) -> None:
    (folder_ds / "coffee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder_ds / "coffee" / "empty.jpg").write_bytes(b"")
    cache = tmp_path / "cache"
    for _ in range(2):  # failures are not cached: reported again on the second run
        ds = open_dataset(folder_ds)
        feats = extract_features(default_model, ds, cache_dir=cache, batch_size=4)
        assert len(feats) == 9
        assert sorted(f.image_id for f in feats.failed) == ["coffee/broken.png", "coffee/empty.jpg"]
        bad = {f.image_id for f in feats.failed}  # listed in the dataset's order
        assert [f.image_id for f in feats.failed] == [s.image_id for s in ds.samples
                                                      if s.image_id in bad]
        assert all(f.reason for f in feats.failed)
    assert len(list(cache.rglob("*.npy"))) == 9


def test_model_key_tracks_weights_and_preprocessing(default_model) -> None:
    key = model_key(default_model)
    assert key == model_key(default_model)
    assert key != model_key(default_model, default_model.spec.preprocess.with_(fit="crop"))
    a = _normnet(seed=0)
    b = _normnet(seed=1)
    assert model_key(a) != model_key(b)  # same name, "random" source, different weights
    # the classifier is not part of the key: a probe head leaves the features unchanged
    with torch.no_grad():
        a.head.classifier.weight.add_(1.0)
    assert model_key(a) == model_key(_normnet(seed=0))


class _NormNet(nn.Module):
    """conv features -> GAP -> LayerNorm -> Linear, the ConvNeXt head layout, tiny."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1))
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.features(x).mean((2, 3))))


def _normnet(seed: int) -> CamModel:
    torch.manual_seed(seed)
    net = _NormNet().eval()
    with torch.no_grad():  # non-trivial affine LayerNorm, as in a trained ConvNeXt
        net.norm.weight.uniform_(0.5, 1.5)
        net.norm.bias.normal_(0, 1.0)
    pre = Preprocess(input_size=(32, 32))
    head = find_gap_head(net, (32, 32))
    assert head.norm is net.norm
    return CamModel(net, ModelSpec("normnet", 3, ["a", "b", "c"], pre, "random"), head,
                    info={"name": "normnet"})


def test_layernorm_head_probe_round_trip(tmp_path: Path) -> None:
    """With a LayerNorm between pooling and classifier, the probe is fitted on the LayerNorm's
    output (what the classifier sees) and the swapped model reproduces it exactly."""
    model = _normnet(seed=0)
    x = torch.randn(40, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    X = pooled_features(model, x).numpy()  # checks X @ W.T + b == the model's logits
    y = np.arange(40) % 2
    X[y == 1] += 0.5  # separable enough to fit something
    probe = fit_probe(X, y, "logistic", C=1.0, class_names=["u", "v"])
    save_head(tmp_path / "h", probe, backbone="normnet", weights=None)
    swapped = apply_head(model, tmp_path / "h")
    assert swapped.spec.class_names == ["u", "v"] and model.spec.class_names == ["a", "b", "c"]
    with torch.no_grad():
        logits = swapped.module(x)
        Xs = pooled_features(swapped, x).numpy()
    np.testing.assert_allclose(Xs, pooled_features(model, x).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits.numpy(), probe.decision(Xs), rtol=1e-4, atol=1e-4)
    # and the CAMs of the swapped model average to those logits minus the bias
    from camloc.cams import CAM

    out = CAM(swapped)(x[:4], classes="all")
    np.testing.assert_allclose((out.maps.mean((2, 3)) + out.bias).numpy(), logits[:4].numpy(),
                               rtol=1e-4, atol=1e-4)


def test_unwritable_cache_does_not_stop_extraction(default_model, folder_ds: Path,
                                                   tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    feats = extract_features(default_model, open_dataset(folder_ds), cache_dir=blocker / "cache")
    assert len(feats) == 9 and feats.computed == 9
    assert feats.cache_error and "cannot write the feature cache" in feats.cache_error
    assert feats.cache_dir is None


@pytest.mark.slow
def test_real_convnext_head_round_trip(tmp_path: Path) -> None:
    """timm's ConvNeXt (LayerNorm after pooling, found by the "timm" head path): the probe fitted
    on the LayerNorm's output reproduces the swapped model's logits; fitting on the fold alone
    (without the LayerNorm's bias) would not."""
    import camloc

    model = camloc.load_model("timm:convnext_atto", weights=None, num_classes=3)
    assert model.head.norm is not None
    with torch.no_grad():
        model.head.norm.bias.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
    x = torch.randn(6, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    X = pooled_features(model, x).numpy()
    y = np.arange(6) % 2
    probe = fit_probe(X + 0.3 * y[:, None], y, C=1.0)
    save_head(tmp_path / "h", probe, backbone="timm:convnext_atto", weights=None)
    swapped = apply_head(model, tmp_path / "h")
    with torch.no_grad():
        logits = swapped.module(x).numpy()
    np.testing.assert_allclose(logits, probe.decision(X), rtol=1e-4, atol=1e-4)
    beta = model.head.norm.bias.detach().numpy()
    assert np.abs(probe.decision(X - beta) - logits).max() > 1e-2
