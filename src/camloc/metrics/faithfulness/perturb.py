"""Perturbations shared by the faithfulness metrics: pixel order, baselines, noisy linear imputation.

* **Pixel order** (:func:`relevance_order`, :func:`relevance_ranks`): pixels sorted by decreasing
  map value; ties go to the lower row-major index first (a stable sort), so the order is a
  deterministic function of the map. Deletion / insertion and ROAD's MoRF take the head of this
  order, ROAD's LeRF its tail.
* **Baselines** (:func:`baseline_like`): ``"zero"`` (zeros of the model's input, i.e. the
  normalisation mean colour for a normalised model), a constant (one number, or one per channel, in
  input units), or ``"blur"``: :func:`gaussian_blur` of the input, a separable Gaussian of standard
  deviation ``sigma`` sampled on ``kernel_size`` taps and normalised to sum 1 (OpenCV's
  ``GaussianBlur`` kernel), with replicated borders. The kernel sums to 1 and the padding copies
  pixels, so blurring the normalised input equals normalising the blurred image.
* **Noisy linear imputation** (:func:`noisy_linear_impute`, Rong et al., ICML 2022): every removed
  pixel takes the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct ones, 1/12 for the
  diagonals; neighbours outside the image are left out and the remaining weights are not
  renormalised), which couples the removed pixels into one sparse linear system; its solution plus
  Gaussian noise replaces them. The system is symmetric positive definite (each removed region
  touches a kept pixel unless all pixels are removed); it is ordered by geometric nested dissection
  of the pixel grid and factorised by SuperLU without pivoting. The map between normalised input and
  image is per-channel affine and the neighbour weights of a row sum to its diagonal, so the
  noise-free imputation is the same in either space; only the noise scale depends on it.

>>> import numpy as np
>>> img = np.tile(np.arange(6.0), (1, 6, 1))          # one channel, a horizontal ramp
>>> removed = np.zeros((6, 6), bool); removed[2:4, 2:4] = True
>>> out = noisy_linear_impute(img, removed)           # interior hole: an affine image is refilled
>>> bool(np.allclose(out, img))
True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from camloc.errors import ConfigError, MetricError

if TYPE_CHECKING:
    import torch

__all__ = ["NEIGHBOUR_WEIGHTS", "BaselineSpec", "relevance_order", "relevance_ranks",
           "gaussian_kernel1d", "gaussian_blur", "baseline_like", "check_baseline",
           "noisy_linear_impute", "removal_count"]

#: ROAD's neighbour weights: ((dy, dx), weight).
NEIGHBOUR_WEIGHTS: tuple[tuple[tuple[int, int], float], ...] = (
    ((-1, -1), 1 / 12), ((-1, 0), 1 / 6), ((-1, 1), 1 / 12),
    ((0, -1), 1 / 6), ((0, 1), 1 / 6),
    ((1, -1), 1 / 12), ((1, 0), 1 / 6), ((1, 1), 1 / 12),
)

#: ``"zero"``, ``"blur"``, a number, or one number per channel (input units).
BaselineSpec = str | float | Sequence[float]


# ---------------------------------------------------------------------------------------- order
def relevance_order(maps: torch.Tensor) -> torch.Tensor:
    """``(N, H*W)`` flat pixel indices by decreasing map value (ties: lower index first)."""
    import torch

    return torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)


def relevance_ranks(maps: torch.Tensor) -> torch.Tensor:
    """``(N, H*W)`` rank of every pixel in :func:`relevance_order` (0 = most relevant)."""
    import torch

    order = relevance_order(maps)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks


def removal_count(num_pixels: int, percent: float) -> int:
    """Pixels removed at ``percent`` of ``num_pixels``: ``floor(num_pixels * percent / 100)``
    (exact for integer percents), as the ROAD authors' code and Quantus count them."""
    p = float(percent)
    if p.is_integer():
        return num_pixels * int(p) // 100
    return int(np.floor(num_pixels * p / 100.0))


# ------------------------------------------------------------------------------------ baselines
def gaussian_kernel1d(sigma: float, kernel_size: int) -> np.ndarray:
    """``exp(-d^2 / (2 sigma^2))`` at ``d = -(k-1)/2 .. (k-1)/2``, normalised to sum 1 (float64)."""
    d = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2.0
    k = np.exp(-(d * d) / (2.0 * float(sigma) ** 2))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float = 5.0, kernel_size: int = 11) -> torch.Tensor:
    """Blur ``(N, C, H, W)`` channel by channel with a separable Gaussian, replicated borders.

    Equals ``cv2.GaussianBlur(img, (kernel_size, kernel_size), sigma,
    borderType=cv2.BORDER_REPLICATE)`` on each channel (to float rounding).
    """
    import torch
    from torch.nn import functional as F

    _check_blur(sigma, kernel_size)
    n, c, h, w = x.shape
    k = torch.as_tensor(gaussian_kernel1d(sigma, kernel_size), dtype=torch.float32, device=x.device)
    r = kernel_size // 2
    y = x.float().reshape(n * c, 1, h, w)
    y = F.pad(y, (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w).to(x.dtype)


def _check_blur(sigma: float, kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or \
            kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(f"blur_kernel_size={kernel_size!r}: expected an odd positive integer")
    try:
        ok = float(sigma) > 0 and np.isfinite(float(sigma))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"blur_sigma={sigma!r}: expected a positive number")


def check_baseline(spec: BaselineSpec, name: str) -> str | float | tuple[float, ...]:
    """Validate a baseline spec; returns its canonical (serialisable) form."""
    if isinstance(spec, str):
        if spec in ("zero", "blur"):
            return spec
        raise ConfigError(f"{name}={spec!r}: expected 'zero', 'blur', a number or one number per "
                          "channel (input units)")
    if isinstance(spec, bool):
        raise ConfigError(f"{name} must not be a bool")
    if isinstance(spec, (int, float, np.integer, np.floating)):
        v = float(spec)
        if not np.isfinite(v):
            raise ConfigError(f"{name}={spec!r}: must be finite")
        return v
    try:
        vals = tuple(float(v) for v in spec)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={spec!r}: expected 'zero', 'blur', a number or a sequence of "
                          "numbers (one per channel)") from None
    if not vals or not all(np.isfinite(vals)):
        raise ConfigError(f"{name}={spec!r}: expected finite numbers, one per channel")
    return vals


def baseline_like(x: torch.Tensor, spec: str | float | tuple[float, ...], sigma: float = 5.0,
                  kernel_size: int = 11) -> torch.Tensor:
    """The baseline image for each input of ``x`` ``(N, C, H, W)`` (see the module docstring)."""
    import torch

    if spec == "zero":
        return torch.zeros_like(x)
    if spec == "blur":
        return gaussian_blur(x, sigma, kernel_size)
    if isinstance(spec, float):
        return torch.full_like(x, spec)
    vals = torch.as_tensor(spec, dtype=x.dtype, device=x.device)
    if vals.numel() != x.shape[1]:
        raise MetricError(f"baseline has {vals.numel()} values but the inputs have {x.shape[1]} "
                          "channels; give one number per channel")
    return vals.view(1, -1, 1, 1).expand_as(x).clone()


# ---------------------------------------------------------------------------------- imputation
def _nd_order(h: int, w: int, leaf: int = 4) -> np.ndarray:
    """Geometric nested dissection of an ``h x w`` 8-connected grid: flat indices, each separator
    (one full row or column of its block, which cuts all 8-neighbour links) after both halves."""
    parts: list[np.ndarray] = []
    stack: list[tuple[int, int, int, int, bool]] = [(0, h, 0, w, False)]
    # iterative post-order: (block, expanded?)
    while stack:
        r0, r1, c0, c1, expanded = stack.pop()
        bh, bw = r1 - r0, c1 - c0
        if bh <= 0 or bw <= 0:
            continue
        if bh * bw <= leaf * leaf or min(bh, bw) <= 2:
            rr, cc = np.mgrid[r0:r1, c0:c1]
            parts.append((rr * w + cc).ravel())
            continue
        if expanded:  # both halves are emitted: the separator follows
            if bh >= bw:
                m = (r0 + r1) // 2
                parts.append(m * w + np.arange(c0, c1))
            else:
                m = (c0 + c1) // 2
                parts.append(np.arange(r0, r1) * w + m)
            continue
        stack.append((r0, r1, c0, c1, True))
        if bh >= bw:
            m = (r0 + r1) // 2
            stack.append((m + 1, r1, c0, c1, False))
            stack.append((r0, m, c0, c1, False))
        else:
            m = (c0 + c1) // 2
            stack.append((r0, r1, m + 1, c1, False))
            stack.append((r0, r1, c0, m, False))
    return np.concatenate(parts).astype(np.int64)


@functools.lru_cache(maxsize=8)
def _nd_position(h: int, w: int) -> np.ndarray:
    """Position of every flat pixel index in the nested-dissection order of the grid."""
    order = _nd_order(h, w)
    pos = np.empty(h * w, np.int64)
    pos[order] = np.arange(h * w)
    pos.setflags(write=False)
    return pos


def noisy_linear_impute(image: np.ndarray, removed: np.ndarray, noise: float | Sequence[float] = 0.0,
                        rng: np.random.Generator | None = None) -> np.ndarray:
    """Replace the ``removed`` pixels of ``image`` by ROAD's noisy linear imputation.

    ``image``: ``(C, H, W)`` floats; ``removed``: ``(H, W)`` bools (True = imputed, at least one pixel
    must stay); ``noise``: standard deviation of the Gaussian noise added to each imputed value (one
    number, or one per channel; 0 for none); ``rng``: the generator the noise is drawn from, as
    ``rng.standard_normal((n_removed, C))`` with removed pixels in row-major order. Returns a new
    float64 ``(C, H, W)`` array; kept pixels are copied unchanged.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    img = np.asarray(image, dtype=np.float64)
    rem = np.asarray(removed, dtype=bool)
    if img.ndim != 3 or rem.shape != img.shape[1:]:
        raise MetricError(f"noisy_linear_impute: image must be (C, H, W) and removed (H, W), got "
                          f"{img.shape} and {rem.shape}")
    c, h, w = img.shape
    out = img.reshape(c, -1).copy()
    miss = np.flatnonzero(rem.reshape(-1))  # row-major
    n = miss.size
    if n == 0:
        return out.reshape(c, h, w)
    if n == h * w:
        raise MetricError("noisy_linear_impute: every pixel is removed; nothing to impute from")
    # unknowns numbered in nested-dissection order (low fill-in without pivoting)
    pos = _nd_position(h, w)[miss]
    nd = np.argsort(pos, kind="stable")
    var = np.full(h * w, -1, np.int64)
    var[miss[nd]] = np.arange(n)
    r, col = np.divmod(miss[nd], w)
    diag = np.zeros(n)
    rhs = np.zeros((n, c))
    rows, cols, vals = [], [], []
    for (dy, dx), wt in NEIGHBOUR_WEIGHTS:
        rr, cc = r + dy, col + dx
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        diag[inside] += wt
        ids = np.flatnonzero(inside)
        nb = rr[inside] * w + cc[inside]
        nbvar = var[nb]
        known = nbvar < 0
        rhs[ids[known]] += wt * out[:, nb[known]].T  # ids are distinct for one offset
        rows.append(ids[~known])
        cols.append(nbvar[~known])
        vals.append(np.full(int((~known).sum()), -wt))
    idx = np.arange(n)
    a = sp.csc_matrix((np.concatenate([*vals, diag]), (np.concatenate([*rows, idx]),
                                                       np.concatenate([*cols, idx]))), shape=(n, n))
    lu = splu(a, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    sol = lu.solve(rhs)  # (n, C) in nested-dissection order
    filled = np.empty_like(sol)
    filled[nd] = sol  # back to row-major order of `miss`
    sigma = np.broadcast_to(np.asarray(noise, dtype=np.float64), (c,))
    if np.any(sigma != 0):
        if rng is None:
            raise MetricError("noisy_linear_impute: noise > 0 needs an rng (np.random.Generator)")
        filled = filled + rng.standard_normal((n, c)) * sigma
    out[:, miss] = filled.T
    return out.reshape(c, h, w)
