"""Faithfulness metrics against torchcam 0.5, pytorch-grad-cam 1.5 and Quantus 0.6 (dev extras).

Same model, same images, same maps; values equal to 1e-4 where the definitions agree, and the
documented differences (docs/faithfulness.md) checked explicitly where they do not.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from camloc.metrics.faithfulness import (AverageDropAccumulator, DeletionInsertionAccumulator,
                                         ROADAccumulator, gaussian_blur, noisy_linear_impute,
                                         relevance_ranks)

torchcam_metrics = pytest.importorskip("torchcam.metrics")
pgc_road = pytest.importorskip("pytorch_grad_cam.metrics.road")

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "camloc" / "assets" / "samples"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
TOL = 1e-4


def photos(h: int, w: int) -> torch.Tensor:
    out = []
    for p in sorted(SAMPLES.glob("*.jpg")):
        a = np.asarray(Image.open(p).convert("RGB").resize((w, h), Image.BILINEAR), np.float32) / 255
        out.append((torch.from_numpy(a).permute(2, 0, 1) - MEAN) / STD)
    return torch.stack(out)


class FixedMaps:
    """A torchcam CAM extractor that returns given maps (so both libraries score the same maps)."""

    def __init__(self, model: nn.Module, maps: torch.Tensor) -> None:
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def gradcam_maps(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, list[int]]:
    """torchcam Grad-CAM maps of the top class, bilinearly resized to the input (as torchcam's
    metrics resize them): in [0, 1], with ties at 0 where the ReLU cut."""
    from torchcam.methods import GradCAM

    with GradCAM(model, target_layer=layer) as ext:
        scores = model(x)
        cls = scores.argmax(1).tolist()
        cam = ext.fuse_cams(ext(cls, scores))
    maps = F.interpolate(cam.unsqueeze(1), tuple(x.shape[2:]), mode="bilinear",
                         align_corners=False).squeeze(1).detach()
    return maps, cls


@pytest.fixture(scope="module")
def setup(default_model):
    """efficientnet_lite0 (camloc's offline ImageNet weights) on the sample photos and their mirror
    images at 128 x 100 (12,800 pixels: a multiple of 100, so percent counts agree with
    pytorch-grad-cam's percentile thresholds); Grad-CAM maps for half the images, smooth random
    maps for the rest; targets alternate between the top-1 and the top-2 class (so the masked
    image sometimes scores higher than the image)."""
    model = default_model.module.eval()
    x = photos(128, 100)
    x = torch.cat([x, x.flip(3)])
    maps, _ = gradcam_maps(model, x, _last_conv(model))
    with torch.no_grad():
        top2 = model(x).topk(2, dim=1).indices
    cls = [int(top2[i, i % 2]) for i in range(len(x))]
    rng = np.random.default_rng(0)
    small = torch.from_numpy(rng.random((len(x), 1, 4, 3)).astype(np.float32))
    smooth = F.interpolate(small, (128, 100), mode="bilinear", align_corners=False)[:, 0]
    maps[1::2] = smooth[1::2]
    return model, x, maps, cls


def softmax_target(cls):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    return [ClassifierOutputSoftmaxTarget(c) for c in cls]


def test_average_drop_equals_torchcam(setup) -> None:
    model, x, maps, cls = setup
    tc = torchcam_metrics.ClassificationMetric(FixedMaps(model, maps),
                                               functools.partial(torch.softmax, dim=-1))
    tc.update(x, class_idx=cls)
    acc = AverageDropAccumulator(mask_space="input", batch_size=3)
    out = acc.update(model, x, maps, cls)
    r, t = acc.compute(), tc.summary()
    assert 0 < out["increase"].sum() < len(cls), "both outcomes must occur for the test to bite"
    assert r["average_drop"] / 100 == pytest.approx(t["avg_drop"], abs=TOL)
    assert r["increase_in_confidence"] / 100 == pytest.approx(t["conf_increase"], abs=TOL)
    # the paper's default (the map multiplies the image in [0, 1]) is a different number
    paper = AverageDropAccumulator(batch_size=3)
    paper.update(model, x, maps, cls)
    assert abs(paper.compute()["average_drop"] - r["average_drop"]) > 0.1


def test_drop_and_increase_equal_pytorch_grad_cam_per_image(setup) -> None:
    """pytorch-grad-cam's DropInConfidence is max(0, Y - O), not divided by Y (documented)."""
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence

    model, x, maps, cls = setup
    drop = DropInConfidence()(x, maps.numpy(), softmax_target(cls), model)
    inc = IncreaseInConfidence()(x, maps.numpy(), softmax_target(cls), model)
    out = AverageDropAccumulator(mask_space="input").update(model, x, maps, cls)
    y, o = out["score"], out["masked_score"]
    np.testing.assert_allclose(np.maximum(0, y - o), drop, rtol=0, atol=TOL)
    np.testing.assert_array_equal(out["increase"], inc)
    np.testing.assert_allclose(out["drop"], 100 * np.maximum(0, y - o) / y, rtol=1e-12)


def test_deletion_insertion_equal_torchcam(setup) -> None:
    """12 steps of ceil(12800 / 12) = 1067 pixels: the last step is shorter."""
    steps = 12
    model, x, maps, cls = setup
    x, maps, cls = x[:4], maps[:4], cls[:4]  # 4 images x 2 curves x steps forwards per library
    sm = functools.partial(torch.softmax, dim=-1)
    # zero baseline for both curves (torchcam's default)
    tc = torchcam_metrics.DeletionInsertionMetric(FixedMaps(model, maps), sm, steps=steps,
                                                  batch_size=16)
    tc.update(x, class_idx=cls)
    acc = DeletionInsertionAccumulator(n_steps=steps, insertion_baseline="zero", batch_size=7)
    acc.update(model, x, maps, cls)
    r, t = acc.compute(), tc.summary()
    assert r["deletion_auc"] == pytest.approx(t["deletion_auc"], abs=TOL)
    assert r["insertion_auc"] == pytest.approx(t["insertion_auc"], abs=TOL)
    # RISE's insertion from the blurred image: torchcam given camloc's blur as its baseline
    tcb = torchcam_metrics.DeletionInsertionMetric(FixedMaps(model, maps), sm, steps=steps,
                                                   baseline=lambda t: gaussian_blur(t, 5.0, 11))
    tcb.update(x, class_idx=cls)
    rise = DeletionInsertionAccumulator(n_steps=steps)  # defaults: deletion zero, insertion blur
    rise.update(model, x, maps, cls)
    assert rise.compute()["deletion_auc"] == pytest.approx(t["deletion_auc"], abs=TOL)
    assert rise.compute()["insertion_auc"] == pytest.approx(tcb.summary()["insertion_auc"], abs=TOL)


def distinct(maps: torch.Tensor) -> torch.Tensor:
    """The same pixel order with distinct values (k / P for the pixel of rank P - 1 - k).

    pytorch-grad-cam thresholds at a percentile, so tied values fall on one side together; with
    distinct, well separated values (also after ``1 - m``) both libraries select the same pixels.
    """
    n, h, w = maps.shape
    p = h * w
    ranks = relevance_ranks(maps)
    m = ((p - 1 - ranks).double() / p).float().view(n, h, w)
    assert all(len(np.unique(v.numpy())) == p and len(np.unique(1 - v.numpy())) == p for v in m)
    return m


def test_road_equals_pytorch_grad_cam_per_percentile(setup) -> None:
    """pytorch-grad-cam's percentile q keeps the q % least (MoRF) or most (LeRF) relevant pixels:
    its q is camloc's removal percentage 100 - q. Noise off in both to compare exactly."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                                  RemoveLeastRelevantFirst,
                                                                  RemoveMostRelevantFirst)

    model, x, maps, cls = setup
    maps = distinct(maps)
    acc = ROADAccumulator(percentiles=(40, 90), noise=0.0, batch_size=16)
    rec = acc.update(model, x, maps, cls)
    tg = softmax_target(cls)
    for q in (10, 60):
        k = acc.percentiles.index(100 - q)
        for name, remover in (("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)):
            theirs = PerturbationConfidenceMetric(remover(q, pgc_road.NoisyLinearImputer(noise=0)))(
                x, maps.numpy(), tg, model)
            np.testing.assert_allclose(rec[f"{name}_score"][:, k] - rec["score"], theirs, rtol=0,
                                       atol=TOL, err_msg=f"{name} q={q}")


def test_road_averages_and_combined_equal_pytorch_grad_cam(setup, monkeypatch) -> None:
    """Averaged over a symmetric set of percentiles the two conventions coincide."""
    model, x, maps, cls = setup
    x, maps, cls = x[:2], distinct(maps[:2]), cls[:2]
    monkeypatch.setattr(pgc_road.NoisyLinearImputer.__init__, "__defaults__",
                        (0.0, pgc_road.neighbors_weights))  # their averagers build default imputers
    pct = [20, 50, 80]
    comb = pgc_road.ROADCombined(pct)(x, maps.numpy(), softmax_target(cls), model)
    acc = ROADAccumulator(percentiles=pct, noise=0.0)
    rec = acc.update(model, x, maps, cls)
    np.testing.assert_allclose(((rec["lerf_score"] - rec["morf_score"]) / 2).mean(1), comb, rtol=0,
                               atol=TOL)
    assert acc.compute()["combined"] == pytest.approx(float(np.mean(comb)), abs=TOL)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-grad-cam: numpy on a tensor
def test_imputation_equals_pytorch_grad_cam_and_quantus() -> None:
    from quantus.functions.perturb_func import noisy_linear_imputation

    rng = np.random.default_rng(4)
    img = rng.normal(size=(3, 37, 29))
    for frac in (0.05, 0.5, 0.9):
        removed = rng.random((37, 29)) < frac
        ours = noisy_linear_impute(img, removed)
        pgc = pgc_road.NoisyLinearImputer(noise=0)(torch.from_numpy(img).float(),
                                                   torch.from_numpy((~removed).astype(np.float32)))
        np.testing.assert_allclose(ours, pgc.double().numpy(), rtol=0, atol=1e-5)  # theirs: float32
        qu = noisy_linear_imputation(img, np.flatnonzero(removed.ravel()), noise=0.0)
        np.testing.assert_allclose(ours, qu, rtol=0, atol=1e-10)
        assert np.array_equal(ours[:, ~removed], img[:, ~removed])


def grey_model() -> nn.Module:
    """A single-channel classifier whose predictions the imputation can flip."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(4 * 30 * 24, 5)).eval()


def test_road_accuracy_equals_quantus_on_single_channel_images() -> None:
    """Quantus' ROAD: MoRF, accuracy of the arg-max class, floor(P p / 100) pixels removed, noise in
    input units. It only runs on single-channel inputs (see the next test)."""
    quantus = pytest.importorskip("quantus")
    model = grey_model()
    rng = np.random.default_rng(8)
    x = rng.normal(size=(16, 1, 30, 24)).astype(np.float32)
    a = rng.random((16, 1, 30, 24)).astype(np.float32)
    y = model(torch.from_numpy(x)).argmax(1).numpy()
    pct = [10, 25, 50, 75, 90]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = quantus.ROAD(noise=0.0, percentages=pct, normalise=False, abs=False,
                              disable_warnings=True, display_progressbar=False)
        theirs = metric(model=model, x_batch=x, y_batch=y, a_batch=a, device="cpu",
                        channel_first=True)
    acc = ROADAccumulator(percentiles=pct, orders=("morf",), noise=0.0, noise_space="input")
    acc.update(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]), y)
    ours = acc.compute()["morf"]["accuracy"]
    assert min(ours) < 100.0, "some prediction must flip for the test to bite"
    assert ours == pytest.approx([100 * float(theirs[p]) for p in pct], abs=TOL)


def test_quantus_road_cannot_score_three_channel_images() -> None:
    """Documented: Quantus 0.6 ranks the attribution broadcast over C x H x W and uses those
    indices as pixel indices, which fails on RGB inputs."""
    quantus = pytest.importorskip("quantus")
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=5).eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 20, 20)).astype(np.float32)
    a = np.random.default_rng(1).random((2, 1, 20, 20)).astype(np.float32)
    with warnings.catch_warnings(), pytest.raises(IndexError):
        warnings.simplefilter("ignore")
        quantus.ROAD(noise=0.0, percentages=[50], normalise=False, disable_warnings=True,
                     display_progressbar=False)(model=model, x_batch=x, y_batch=np.array([0, 1]),
                                                a_batch=a, device="cpu", channel_first=True)
    ROADAccumulator(percentiles=(50,)).update(model, torch.from_numpy(x), torch.from_numpy(a[:, 0]),
                                              [0, 1])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_parity_on_efficientnet_lite0_at_224(default_model) -> None:
    """The offline ImageNet model on the sample photos at 224 x 224 with Grad-CAM maps of its last
    block: Average Drop (torchcam, input space), deletion / insertion (torchcam, 10 steps), ROAD at
    the percentiles where both count rules remove the same number of the 50,176 pixels."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                                  RemoveMostRelevantFirst)

    model = default_model.module.eval()
    x = photos(224, 224)
    maps, cls = gradcam_maps(model, x, _last_conv(model))
    sm = functools.partial(torch.softmax, dim=-1)
    tc = torchcam_metrics.ClassificationMetric(FixedMaps(model, maps), sm)
    tc.update(x, class_idx=cls)
    ad = AverageDropAccumulator(mask_space="input")
    ad.update(default_model, x, maps, cls)
    assert ad.compute()["average_drop"] / 100 == pytest.approx(tc.summary()["avg_drop"], abs=TOL)
    td = torchcam_metrics.DeletionInsertionMetric(FixedMaps(model, maps), sm, steps=10)
    td.update(x, class_idx=cls)
    di = DeletionInsertionAccumulator(n_steps=10, insertion_baseline="zero")
    di.update(default_model, x, maps, cls)
    assert di.compute()["deletion_auc"] == pytest.approx(td.summary()["deletion_auc"], abs=TOL)
    assert di.compute()["insertion_auc"] == pytest.approx(td.summary()["insertion_auc"], abs=TOL)
    x, dm, cls = x[:2], distinct(maps[:2]), cls[:2]  # the peer's imputation is slow: two photos
    road = ROADAccumulator(percentiles=(50, 90), orders=("morf",), noise=0.0)
    rec = road.update(default_model, x, dm, cls)
    for q, k in ((50, 0), (10, 1)):
        theirs = PerturbationConfidenceMetric(RemoveMostRelevantFirst(q, pgc_road.NoisyLinearImputer(
            noise=0)))(x, dm.numpy(), softmax_target(cls), model)
        np.testing.assert_allclose(rec["morf_score"][:, k] - rec["score"], theirs, atol=TOL)


def _last_conv(model: nn.Module) -> str:
    name = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            name = n
    assert name is not None
    return name
