"""Map post-processing: resizing maps to the input (``upsample``) and scaling them (``normalize``).

These are camloc's one map resize and one map normalisation: explain, the web app, TTA's merge of
its variants and the faithfulness metrics all go through them. Two places differ on purpose and
keep their own arithmetic, because their numbers are a published protocol's:

- ``camloc.evaluation.evaluate.prepare_scoremap`` resizes raw maps to the 224 x 224 evaluation
  grid with OpenCV's ``INTER_CUBIC`` (wsolevaluation's resize; it differs from :func:`upsample`'s
  bicubic at the borders and in the last bits) and then min-max normalises them as wsolevaluation
  does (``camloc.metrics.normalize_minmax``, the ``"minmax"`` below in NumPy). Its ``protocol="max"``
  **clips negatives to 0** before dividing by the maximum (the metrics take maps in ``[0, 1]``),
  where ``normalize(..., "max")`` keeps them (see there). Moving either onto this module would
  change MaxBoxAccV2 and PxAP in their last digits.
- TTA's bilinear resize (``camloc.cams.tta``) resizes the *input images* of its scale variants,
  not maps; their maps come back through :func:`upsample`.

>>> import torch
>>> m = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
>>> normalize(m, "max").flatten().tolist()
[0.0, 0.25, 0.5, 1.0]
>>> upsample(m, (4, 4), "bilinear").shape
torch.Size([1, 1, 4, 4])
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from camloc.errors import ConfigError

__all__ = ["normalize", "upsample"]


def _interp_matrix(n_in: int, n_out: int, mode: str, device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
    """The ``(n_out, n_in)`` matrix of 1-D ``mode`` interpolation (half-pixel centres).

    Column ``i`` is the interpolation of the unit vector ``e_i``; torch's bicubic and bilinear
    kernels are separable, so a 2-D resize is ``A_y @ M @ A_x.T`` exactly.
    """
    key = (n_in, n_out, mode, str(device), dtype)
    mat = _INTERP_CACHE.get(key)
    if mat is None:
        eye = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, n_in, 1)
        cols = F.interpolate(eye, size=(n_out, 1), mode=mode, align_corners=False)
        mat = cols.view(n_in, n_out).t().contiguous().to(device=device, dtype=dtype)
        if len(_INTERP_CACHE) > 64:
            _INTERP_CACHE.clear()
        _INTERP_CACHE[key] = mat
    return mat


_INTERP_CACHE: dict[tuple, torch.Tensor] = {}


def upsample(maps: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize ``(N, k, h, w)`` maps to ``size=(H, W)`` (half-pixel centres, no corner alignment).

    Bicubic and bilinear resizing are computed as two small matrix products with the separable
    1-D interpolation matrices (the same numbers as ``F.interpolate``, several times faster for
    many small maps, on CPU and GPU alike).
    """
    if mode not in ("bicubic", "bilinear", "nearest"):
        raise ConfigError(f"mode={mode!r}: expected bicubic, bilinear or nearest")
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if mode == "nearest":
        return F.interpolate(maps, size=size, mode="nearest")
    h, w = maps.shape[-2:]
    ay = _interp_matrix(h, size[0], mode, maps.device, maps.dtype)
    ax = _interp_matrix(w, size[1], mode, maps.device, maps.dtype)
    return torch.matmul(torch.matmul(ay, maps), ax.t())


def normalize(maps: torch.Tensor, how: str = "max") -> torch.Tensor:
    """Normalise each map over its spatial extent.

    ``"max"``: scale by the map's maximum (the paper's "fraction of the maximum"; computed as a
    multiplication by ``1 / max``). **Negative values are kept**, scaled like the rest: the result
    lies in ``[min / max, 1]``, so a box threshold in ``(0, 1]`` counts them as background and a
    saved map still shows where the evidence was against the class. A map whose maximum is not
    positive, or that holds a NaN, becomes zeros. ``"minmax"``: ``(M - min) / (max - min)`` as
    wsolevaluation does, so the minimum (negative or not) goes to 0 and the result lies in
    ``[0, 1]`` (constant or NaN maps become zeros). ``"none"``: unchanged.

    >>> m = torch.tensor([[[[-2.0, 0.0], [1.0, 4.0]]]])
    >>> normalize(m, "max").flatten().tolist()
    [-0.5, 0.0, 0.25, 1.0]
    >>> normalize(m, "minmax").flatten().tolist()
    [0.0, 0.3333333432674408, 0.5, 1.0]
    >>> bool((normalize(m - 5, "max") == 0).all())  # maximum -1: no positive evidence
    True
    """
    if how == "none":
        return maps
    flat = maps.flatten(-2)
    # a map holding NaN has a NaN maximum (torch's max reductions propagate NaN), and NaN > 0 is
    # false: such maps are never "usable" below, with no separate pass looking for NaN
    mx = flat.amax(dim=-1, keepdim=True)
    if how == "max":
        ok = mx > 0
        # one pass: divide by the max where it is usable, multiply by 0 where it is not
        scale = torch.where(ok, 1.0 / torch.where(ok, mx, torch.ones_like(mx)), torch.zeros_like(mx))
        out = flat * scale
        if torch.isnan(mx).any():
            out = torch.nan_to_num(out, nan=0.0)
    elif how == "minmax":
        mn = flat.amin(dim=-1, keepdim=True)
        rng = mx - mn
        ok = rng > 0
        out = torch.where(ok, (flat - mn) / torch.where(ok, rng, torch.ones_like(rng)),
                          torch.zeros_like(flat))
    else:
        raise ConfigError(f"normalize={how!r}: expected 'max', 'minmax' or 'none'")
    return out.view_as(maps)
