"""The CAM engine: one forward pass -> logits and class activation maps for any set of classes.

For exact CAM the map of class ``c`` is ``M_c = sum_k W[c, k] f_k`` over the last spatial features
``f`` (after the head's exact fold, see :mod:`camloc.models.heads`), and the class score is
``mean_xy M_c + b_c``. Methods differ only in how they weigh the channels: a subclass overrides
:meth:`CAMMethod.channel_weights` (and sets ``needs_grad`` if it differentiates), and the engine does
the rest: batching, class selection, hooks (always removed), the user's train/eval flags (always
restored), no gradients where none are needed.

>>> import torch, camloc
>>> from camloc.cams import CAM
>>> model = camloc.load_model("resnet18", weights=None, num_classes=10)
>>> out = CAM(model)(torch.randn(2, 3, 224, 224), classes="all")
>>> out.maps.shape
torch.Size([2, 10, 7, 7])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Union

import torch
from torch.nn import functional as F

from camloc.errors import ConfigError
from camloc.models.heads import eval_mode
from camloc.models.registry import CamModel

__all__ = ["CAMMethod", "CAM", "GradCAM", "CamOutput", "ClassSelection", "select_classes",
           "upsample", "normalize"]

ClassSelection = Union[int, str, Sequence[int], torch.Tensor]


@dataclass
class CamOutput:
    """What one engine call returns (all tensors on the model's device).

    ``maps`` are raw (unnormalised) at feature resolution; for exact CAM on a GAP network
    ``maps.mean((2, 3)) + bias == logits.gather(1, class_ids)``.
    """

    logits: torch.Tensor  # (N, C)
    class_ids: torch.Tensor  # (N, k) long
    maps: torch.Tensor  # (N, k, h, w) float32
    bias: torch.Tensor  # (N, k): per-image effective bias of each selected class

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.float().softmax(dim=1)

    @property
    def scores(self) -> torch.Tensor:
        return self.logits.gather(1, self.class_ids)


def select_classes(logits: torch.Tensor, classes: ClassSelection) -> torch.Tensor:
    """Resolve a class selection to an ``(N, k)`` index tensor.

    ``int k`` or ``"top5"``: the top-k classes of each image (all of them if there are fewer); ``"all"``: every class; a list of ids:
    the same classes for every image; an ``(N, k)`` tensor: per-image ids (e.g. ground truth).
    """
    n, c = logits.shape
    if isinstance(classes, str):
        if classes == "all":
            return torch.arange(c, device=logits.device).expand(n, c)
        if classes.startswith("top") and classes[3:].isdigit():
            classes = int(classes[3:])
        else:
            raise ConfigError(f"classes={classes!r}: expected 'all', 'topK', an int, or class ids")
    if isinstance(classes, bool):
        raise ConfigError("classes must not be a bool")
    if isinstance(classes, int):
        if classes < 1:
            raise ConfigError(f"top_k={classes}: must be at least 1")
        return logits.topk(min(classes, c), dim=1).indices  # top-5 of a 3-class model: all 3
    ids = torch.as_tensor(classes, device=logits.device, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids.expand(n, -1)
    if ids.dim() != 2 or ids.shape[0] != n:
        raise ConfigError(f"classes: expected ids of shape (k,) or ({n}, k), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c):
        raise ConfigError(f"classes: ids must be in [0, {c}), got {ids.min().item()}..{ids.max().item()}")
    return ids


class CAMMethod:
    """Base of every map method. Subclasses override :meth:`channel_weights`."""

    name: ClassVar[str] = "base"
    needs_grad: ClassVar[bool] = False

    def __init__(self, model: CamModel) -> None:
        if not isinstance(model, CamModel):
            raise ConfigError("model: expected a camloc CamModel (use camloc.load_model)")
        self.model = model

    def channel_weights(self, features: torch.Tensor, logits: torch.Tensor,
                        class_ids: torch.Tensor) -> torch.Tensor:
        """Return ``(N, k, K)`` (or ``(k, K)`` when shared by every image) channel weights."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, classes: ClassSelection = 5) -> CamOutput:
        """Run the model once on the batch ``x`` and compute maps for ``classes``."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ConfigError(f"x: expected a (N, 3, H, W) tensor, got "
                              f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        module, head = self.model.module, self.model.head
        x = x.to(self.model.device)
        with eval_mode(module), torch.set_grad_enabled(self.needs_grad):
            logits, f = head.run(module, x)
            fprime, bias_all = head.folded(f)
            # Exact CAM weighs the folded features; gradient methods differentiate the raw ones.
            feats = f if self.needs_grad else fprime
            ids = select_classes(logits.detach(), classes)
            weights = self.channel_weights(feats, logits, ids)
            if weights.dim() == 2:
                maps = torch.einsum("ck,nkhw->nchw", weights, feats)
            else:
                maps = torch.einsum("nck,nkhw->nchw", weights, feats)
            bias = bias_all.gather(1, ids)
        return CamOutput(logits.detach(), ids, maps.detach().float(), bias.detach())


class CAM(CAMMethod):
    """Exact class activation maps (Zhou et al., CVPR 2016): the classifier rows are the weights."""

    name = "cam"

    def channel_weights(self, features: torch.Tensor, logits: torch.Tensor,
                        class_ids: torch.Tensor) -> torch.Tensor:
        w = self.model.head.classifier.weight.to(features.dtype)
        n, k = class_ids.shape
        if n > 0 and k == w.shape[0] and bool((class_ids == torch.arange(k, device=class_ids.device)).all()):
            return w  # all classes: one matrix product, no gather
        return w[class_ids]


class GradCAM(CAMMethod):
    """Grad-CAM (Selvaraju et al., 2017): channel weights are the spatially averaged gradients of
    the class score. Uses ``torch.autograd.grad``, so parameters' ``.grad`` is never touched. On a
    GAP -> linear network its maps equal CAM's divided by ``h * w``."""

    name = "gradcam"
    needs_grad = True

    def channel_weights(self, features: torch.Tensor, logits: torch.Tensor,
                        class_ids: torch.Tensor) -> torch.Tensor:
        n, k = class_ids.shape
        out = []
        for j in range(k):
            score = logits.gather(1, class_ids[:, j:j + 1]).sum()
            (g,) = torch.autograd.grad(score, features, retain_graph=j < k - 1)
            out.append(g.mean(dim=(2, 3)))
        return torch.stack(out, dim=1).detach()


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

    ``"max"``: divide by the map's maximum (the paper's "fraction of the maximum"; a map whose
    maximum is not positive becomes zeros). ``"minmax"``: ``(M - min) / (max - min)`` as
    wsolevaluation does (constant or NaN maps become zeros). ``"none"``: unchanged.
    """
    if how == "none":
        return maps
    flat = maps.flatten(-2)
    bad = torch.isnan(flat).any(dim=-1, keepdim=True)
    if how == "max":
        mx = flat.amax(dim=-1, keepdim=True)
        ok = (mx > 0) & ~bad
        # one pass: divide by the max where it is usable, multiply by 0 where it is not
        scale = torch.where(ok, 1.0 / torch.where(ok, mx, torch.ones_like(mx)), torch.zeros_like(mx))
        out = flat * scale
        if bad.any():
            out = torch.nan_to_num(out, nan=0.0)
    elif how == "minmax":
        mn = flat.amin(dim=-1, keepdim=True)
        mx = flat.amax(dim=-1, keepdim=True)
        rng = mx - mn
        ok = (rng > 0) & ~bad
        out = torch.where(ok, (flat - mn) / torch.where(ok, rng, torch.ones_like(rng)),
                          torch.zeros_like(flat))
    else:
        raise ConfigError(f"normalize={how!r}: expected 'max', 'minmax' or 'none'")
    return out.view_as(maps)
