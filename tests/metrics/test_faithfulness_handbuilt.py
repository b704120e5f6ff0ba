"""Faithfulness metrics against values computed by hand.

The model is linear in the pixels (float64 logits ``W x + b``), so every perturbed score is a sum
of per-pixel contributions: deletion / insertion curves are cumulative sums in the pixel order
(ranked here with plain ``sorted``), ROAD scores are ``W`` applied to an imputation solved with a
dense matrix written out pixel by pixel, and the noise is reproduced from its documented seed.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from camloc.metrics.faithfulness import (AverageDropAccumulator, DeletionInsertionAccumulator,
                                         ROADAccumulator, gaussian_blur, noisy_linear_impute,
                                         relevance_order)
from camloc.metrics.faithfulness._base import stable_key

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class LinearModel(nn.Module):
    """logits = W x + b in float64 (inputs flattened)."""

    def __init__(self, c: int, h: int, w: int, k: int, seed: int = 0, scale: float = 0.05) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(k, c * h * w, generator=g, dtype=torch.float64) * scale)
        self.bias = nn.Parameter(torch.randn(k, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double().flatten(1) @ self.weight.t() + self.bias


def tied_maps(rng: np.random.Generator, n: int, h: int, w: int, levels: int = 5) -> torch.Tensor:
    """Maps with only ``levels`` distinct values: many ties, so the tie rule matters."""
    return torch.from_numpy((rng.integers(0, levels, (n, h, w)) / (levels - 1)).astype(np.float32))


def hand_order(m: np.ndarray) -> list[int]:
    flat = m.ravel().tolist()
    return sorted(range(len(flat)), key=lambda j: (-flat[j], j))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def trapezoid(y: list[float], x: list[float]) -> float:
    return sum((x[j + 1] - x[j]) * (y[j] + y[j + 1]) / 2 for j in range(len(x) - 1))


def hand_curves(model: LinearModel, x: np.ndarray, base: np.ndarray, m: np.ndarray, cls: int,
                counts: list[int], score: str) -> tuple[list[float], list[float]]:
    """Deletion and insertion curves of one image (x, base: (C, H, W) float64)."""
    c, h, w = x.shape
    wt = model.weight.detach().numpy().reshape(-1, c, h * w)
    b = model.bias.detach().numpy()
    order = hand_order(m)
    xf, bf = x.reshape(c, -1), base.reshape(c, -1)
    contrib = (wt * (xf - bf)[None]).sum(1)[:, order]  # (K, P) in rank order
    cum = np.concatenate([np.zeros((wt.shape[0], 1)), np.cumsum(contrib, axis=1)], axis=1)
    full = (wt * xf[None]).sum((1, 2)) + b
    at_base = (wt * bf[None]).sum((1, 2)) + b
    dele = full[:, None] - cum[:, counts]
    ins = at_base[:, None] + cum[:, counts]
    if score == "softmax":
        dele, ins = softmax(dele.T).T, softmax(ins.T).T
    return dele[cls].tolist(), ins[cls].tolist()


@pytest.mark.parametrize("score", ["logit", "softmax"])
@pytest.mark.parametrize("steps", [{"n_steps": 7}, {"pixels_per_step": 5}, {"n_steps": 48}])
def test_deletion_insertion_equal_hand_curves(score: str, steps: dict) -> None:
    rng = np.random.default_rng(3)
    n, c, h, w = 3, 3, 6, 8
    model = LinearModel(c, h, w, k=4, seed=1)
    x = torch.from_numpy(rng.normal(size=(n, c, h, w)).astype(np.float32))
    maps = tied_maps(rng, n, h, w)
    cls = [0, 3, 1]
    acc = DeletionInsertionAccumulator(**steps, deletion_baseline=0.5,
                                       insertion_baseline=(-1.0, 0.0, 2.0), score=score, batch_size=4)
    out = acc.update(model, x, maps, cls)
    p = h * w
    k = steps.get("pixels_per_step") or -(-p // steps["n_steps"])
    counts = list(range(0, p, k)) + [p]
    frac = [v / p for v in counts]
    np.testing.assert_allclose(out["fractions"], frac, rtol=0, atol=1e-15)
    d_aucs, i_aucs = [], []
    for i in range(n):
        xi = x[i].double().numpy()
        d, _ = hand_curves(model, xi, np.full_like(xi, 0.5), maps[i].numpy(), cls[i], counts, score)
        base = np.broadcast_to(np.array([-1.0, 0.0, 2.0])[:, None, None], xi.shape)
        _, ins = hand_curves(model, xi, base, maps[i].numpy(), cls[i], counts, score)
        np.testing.assert_allclose(out["deletion"][i], d, rtol=0, atol=1e-12)
        np.testing.assert_allclose(out["insertion"][i], ins, rtol=0, atol=1e-12)
        d_aucs.append(trapezoid(d, frac))
        i_aucs.append(trapezoid(ins, frac))
    r = acc.compute()
    assert r["deletion_auc"] == pytest.approx(np.mean(d_aucs), abs=1e-12)
    assert r["insertion_auc"] == pytest.approx(np.mean(i_aucs), abs=1e-12)
    np.testing.assert_allclose(r["curves"]["deletion"], out["deletion"].mean(0), atol=1e-12)


def test_insertion_from_blur_matches_opencv_blur() -> None:
    """RISE's insertion starts from the blurred image: the default blur equals OpenCV's
    GaussianBlur (11 taps, sigma 5, replicated border), and the curve ends at the image's score."""
    rng = np.random.default_rng(5)
    n, c, h, w = 2, 3, 12, 10
    model = LinearModel(c, h, w, k=3, seed=2)
    x = torch.from_numpy(rng.normal(size=(n, c, h, w)).astype(np.float32))
    maps = torch.from_numpy(rng.random((n, h, w)).astype(np.float32))
    acc = DeletionInsertionAccumulator(n_steps=10, modes=("insertion",), score="logit")
    out = acc.update(model, x, maps, [2, 0])
    counts = list(range(0, h * w, 12)) + [h * w]
    for i in range(n):
        xi = x[i].numpy()
        blur = np.stack([cv2.GaussianBlur(xi[ch], (11, 11), 5.0, borderType=cv2.BORDER_REPLICATE)
                         for ch in range(c)]).astype(np.float64)
        _, ins = hand_curves(model, xi.astype(np.float64), blur, maps[i].numpy(), [2, 0][i], counts,
                             "logit")
        np.testing.assert_allclose(out["insertion"][i], ins, rtol=0, atol=1e-5)
    assert set(acc.compute()) >= {"insertion_auc"} and "deletion_auc" not in acc.compute()


def test_gaussian_blur_equals_opencv() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 20, 17)).astype(np.float32)
    for sigma, k in ((5.0, 11), (1.5, 7), (3.0, 31)):
        got = gaussian_blur(torch.from_numpy(x), sigma, k).numpy()
        for i in range(2):
            for ch in range(3):
                ref = cv2.GaussianBlur(x[i, ch], (k, k), sigma, borderType=cv2.BORDER_REPLICATE)
                np.testing.assert_allclose(got[i, ch], ref, rtol=0, atol=2e-6)


def test_pixel_order_ties_go_to_lower_index() -> None:
    m = torch.tensor([[[0.5, 1.0, 0.5], [1.0, 0.0, 0.5]]])
    assert relevance_order(m)[0].tolist() == [1, 3, 0, 2, 5, 4]
    rng = np.random.default_rng(1)
    maps = tied_maps(rng, 4, 7, 9, levels=3)
    for i in range(4):
        assert relevance_order(maps)[i].tolist() == hand_order(maps[i].numpy())


@pytest.mark.parametrize("space", ["image", "input"])
def test_average_drop_equals_hand_values(space: str) -> None:
    rng = np.random.default_rng(7)
    n, c, h, w = 6, 3, 5, 4
    model = LinearModel(c, h, w, k=5, seed=3, scale=0.3)
    x = torch.from_numpy(rng.normal(size=(n, c, h, w)).astype(np.float32))
    maps = torch.from_numpy(rng.random((n, h, w)).astype(np.float32))
    maps[0] = 1.0  # E = 1: the image itself
    cls = rng.integers(0, 5, n).tolist()
    acc = AverageDropAccumulator(mask_space=space, mean=MEAN, std=STD, batch_size=4)
    acc.update(model, x, maps, cls)
    wt, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    xs = x.double().numpy()
    e = maps.double().numpy()[:, None]
    if space == "image":
        mu, sd = np.array(MEAN)[:, None, None], np.array(STD)[:, None, None]
        masked = ((xs * sd + mu) * e - mu) / sd
    else:
        masked = xs * e
    y = softmax(xs.reshape(n, -1) @ wt.T + b)[np.arange(n), cls]
    o = softmax(masked.reshape(n, -1) @ wt.T + b)[np.arange(n), cls]
    drops = [100 * max(0.0, yi - oi) / yi for yi, oi in zip(y, o)]
    incs = [100.0 * (oi > yi) for yi, oi in zip(y, o)]
    assert 0 < sum(v > 0 for v in incs) < n, "the data must hold both increases and drops"
    r = acc.compute()
    assert r["average_drop"] == pytest.approx(np.mean(drops), abs=1e-5)
    assert r["increase_in_confidence"] == pytest.approx(np.mean(incs), abs=1e-12)
    # E = 1 leaves the image as it is
    assert acc.per_image[0]["masked_score"] == pytest.approx(acc.per_image[0]["score"], abs=1e-6)


def dense_impute(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """ROAD's equations written out pixel by pixel and solved densely."""
    c, h, w = img.shape
    miss = [(r, q) for r in range(h) for q in range(w) if removed[r, q]]
    index = {p: i for i, p in enumerate(miss)}
    a = np.zeros((len(miss), len(miss)))
    rhs = np.zeros((len(miss), c))
    nbrs = {(-1, -1): 1 / 12, (-1, 0): 1 / 6, (-1, 1): 1 / 12, (0, -1): 1 / 6, (0, 1): 1 / 6,
            (1, -1): 1 / 12, (1, 0): 1 / 6, (1, 1): 1 / 12}
    for i, (r, q) in enumerate(miss):
        for (dr, dq), wt in nbrs.items():
            rr, qq = r + dr, q + dq
            if not (0 <= rr < h and 0 <= qq < w):
                continue
            a[i, i] += wt
            if (rr, qq) in index:
                a[i, index[(rr, qq)]] -= wt
            else:
                rhs[i] += wt * img[:, rr, qq]
    sol = np.linalg.solve(a, rhs)
    out = img.copy()
    for i, (r, q) in enumerate(miss):
        out[:, r, q] = sol[i]
    return out


def test_imputation_equals_dense_solution_and_refills_affine_images() -> None:
    rng = np.random.default_rng(11)
    img = rng.normal(size=(3, 9, 11))
    for frac in (0.1, 0.5, 0.95):
        removed = rng.random((9, 11)) < frac
        np.testing.assert_allclose(noisy_linear_impute(img, removed), dense_impute(img, removed),
                                   rtol=0, atol=1e-12)
    yy, xx = np.mgrid[0:9, 0:11]
    affine = np.stack([0.3 * yy - 0.2 * xx + 1, 2 * xx, -yy + 5.0])
    hole = np.zeros((9, 11), bool)
    hole[2:7, 1:9] = True
    np.testing.assert_allclose(noisy_linear_impute(affine, hole), affine, rtol=0, atol=1e-12)
    with pytest.raises(Exception, match="every pixel"):
        noisy_linear_impute(img, np.ones((9, 11), bool))


@pytest.mark.parametrize("noise_space", ["image", "input"])
def test_road_equals_hand_imputation_and_seeded_noise(noise_space: str) -> None:
    rng = np.random.default_rng(13)
    n, c, h, w = 3, 3, 9, 7
    model = LinearModel(c, h, w, k=4, seed=4, scale=0.5)
    x = torch.from_numpy(rng.normal(size=(n, c, h, w)).astype(np.float32))
    maps = tied_maps(rng, n, h, w, levels=6)
    cls = [1, 0, 3]
    pct = (10, 50, 90)
    ids = ["im-a", "im-b", "im-c"]
    clean = ROADAccumulator(percentiles=pct, noise=0.0, score="logit")
    noisy = ROADAccumulator(percentiles=pct, noise=0.01, noise_space=noise_space, mean=MEAN, std=STD,
                            seed=5, score="logit")
    rc = clean.update(model, x, maps, cls, image_ids=ids)
    rn = noisy.update(model, x, maps, cls, image_ids=ids)
    wt, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    p = h * w
    sigma = 0.01 / np.array(STD) if noise_space == "image" else np.full(3, 0.01)
    for i in range(n):
        order = hand_order(maps[i].numpy())
        xi = x[i].double().numpy()
        for k, q in enumerate(pct):
            cnt = p * q // 100
            for oi, name in enumerate(("morf", "lerf")):
                removed = np.zeros(p, bool)
                removed[order[:cnt] if name == "morf" else order[p - cnt:]] = True
                imp = dense_impute(xi, removed.reshape(h, w))
                logits = wt @ imp.ravel() + b
                assert rc[f"{name}_score"][i, k] == pytest.approx(logits[cls[i]], abs=1e-5)
                assert rc[f"{name}_correct"][i, k] == float(np.argmax(logits) == cls[i])
                # the noise: standard normals from the documented seed, in row-major pixel order
                draws = np.random.default_rng([5, stable_key(ids[i]), oi, q * 1000]).standard_normal(
                    (int(removed.sum()), c)) * sigma
                noise_img = np.zeros((c, p))
                noise_img[:, np.flatnonzero(removed)] = draws.T
                want = logits[cls[i]] + wt[cls[i]] @ noise_img.ravel()
                assert rn[f"{name}_score"][i, k] == pytest.approx(want, abs=1e-5)
    r = clean.compute()
    sc_m, sc_l = rc["morf_score"], rc["lerf_score"]
    assert r["morf"]["score"] == pytest.approx(sc_m.mean(0).tolist(), abs=1e-12)
    assert r["morf"]["score_change"] == pytest.approx((sc_m - rc["score"][:, None]).mean(0).tolist(),
                                                      abs=1e-12)
    assert r["lerf"]["accuracy"] == pytest.approx((100 * rc["lerf_correct"].mean(0)).tolist())
    assert r["combined"] == pytest.approx(((sc_l - sc_m) / 2).mean(), abs=1e-12)


def test_road_noise_is_deterministic_and_seeded() -> None:
    rng = np.random.default_rng(2)
    model = LinearModel(3, 8, 8, k=3, seed=0)
    x = torch.from_numpy(rng.normal(size=(2, 3, 8, 8)).astype(np.float32))
    maps = torch.from_numpy(rng.random((2, 8, 8)).astype(np.float32))

    def run(seed: int, ids=None) -> np.ndarray:
        a = ROADAccumulator(percentiles=(30, 70), noise=0.05, seed=seed, score="logit")
        return a.update(model, x, maps, [0, 1], image_ids=ids)["morf_score"]

    np.testing.assert_array_equal(run(1), run(1))
    np.testing.assert_array_equal(run(1, ["a", "b"]), run(1, ["a", "b"]))
    assert not np.array_equal(run(1), run(2))
    assert not np.array_equal(run(1, ["a", "b"]), run(1, ["b", "a"]))
