"""Finding and verifying a model's GAP -> linear head.

Exact CAM needs two things from a classifier: its last spatial feature map ``f`` (N, K, h, w) and
the linear layer ``W, b`` that turns the globally pooled features into logits. camloc finds them
from the model's own structure (timm's ``forward_features``/``forward_head``, camloc's
:class:`~camloc.models.gapnet.GapNet`) or by tracing one forward pass, and **verifies** the result
numerically: ``logits == W @ pool(f) + b`` on probe inputs, to within float tolerance. A model for
which no such decomposition exists (VGG or AlexNet with their FC stacks, MobileNetV3's
pool -> linear -> hardswish -> linear head) raises :class:`~camloc.errors.UnsupportedHeadError`
instead of silently computing something else.

A LayerNorm between pooling and the classifier (ConvNeXt) is folded exactly: with per-image
scalars ``mu``, ``sigma`` of the pooled vector, ``W LN(mean f) + b = mean_xy[W gamma (f - mu)/sigma]
+ W beta + b``, so the map stays a per-pixel linear function of the features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from camloc.errors import UnsupportedHeadError

__all__ = ["GapHead", "find_gap_head", "tap_features"]

ALTERNATIVES = (
    "Exact CAM needs global average pooling followed by one linear layer. Alternatives: a "
    "gradient-based method (Grad-CAM family), converting the head to GAP and fine-tuning it "
    "(`camloc train --arch vgg16-gap`), or a linear probe on pooled features (`camloc probe`)."
)


@dataclass
class GapHead:
    """Where a model's last spatial features are and how they become logits.

    ``features_fn(model, x) -> (logits, features)`` runs ONE forward pass and returns both.
    ``post`` is applied to the captured features before pooling (ReLU for DenseNet, identity
    otherwise); ``norm`` is a LayerNorm over channels applied after pooling (ConvNeXt).
    """

    classifier: nn.Linear
    pool: Literal["avg", "max"] = "avg"
    feature_module: nn.Module | None = None  # hooked module (traced models)
    method: Literal["hook", "timm", "gapnet"] = "hook"
    post_relu: bool = False
    norm: nn.Module | None = None
    description: str = ""

    @property
    def num_channels(self) -> int:
        return int(self.classifier.in_features)

    @property
    def num_classes(self) -> int:
        return int(self.classifier.out_features)

    def run(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass: ``(logits, features)`` with features ready for pooling."""
        if self.method == "timm":
            f = model.forward_features(x)  # type: ignore[operator]
            logits = model.forward_head(f)  # type: ignore[operator]
        elif self.method == "gapnet":
            f = model.forward_features(x)  # type: ignore[operator]
            logits = model.forward_head(f)  # type: ignore[operator]
        else:
            assert self.feature_module is not None  # internal invariant, not user input
            with tap_features(self.feature_module) as box:
                logits = model(x)
            f = box[0]
        if isinstance(logits, tuple):  # GoogLeNet/Inception in train mode return aux outputs
            logits = logits[0]
        if hasattr(logits, "logits"):
            logits = logits.logits
        if self.post_relu:
            f = F.relu(f)
        return logits, f

    def folded(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and per-image bias such that ``logits = W @ pool(f') + bias``.

        Without a norm this is ``(f, b)``; with ConvNeXt's LayerNorm it is the exact fold.
        Returns ``f'`` (N, K, h, w) and ``bias`` (N, C).
        """
        w, b = self.classifier.weight, self.classifier.bias
        n = f.shape[0]
        bias = b if b is not None else torch.zeros(w.shape[0], device=f.device, dtype=f.dtype)
        if self.norm is None:
            return f, bias.to(f.dtype).expand(n, -1)
        pooled = f.mean(dim=(2, 3)) if self.pool == "avg" else f.amax(dim=(2, 3))
        mu = pooled.mean(dim=1, keepdim=True)
        var = pooled.var(dim=1, unbiased=False, keepdim=True)
        eps = float(getattr(self.norm, "eps", 1e-6))
        sigma = torch.sqrt(var + eps)
        gamma = getattr(self.norm, "weight", None)
        beta = getattr(self.norm, "bias", None)
        scale = (gamma if gamma is not None else torch.ones_like(mu[0]))
        fprime = (f - mu[:, :, None, None]) / sigma[:, :, None, None] * scale[None, :, None, None]
        bias_n = bias.to(f.dtype).expand(n, -1)
        if beta is not None:
            bias_n = bias_n + (w @ beta)[None, :]
        return fprime, bias_n

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        """Recompute logits from features through the identified head (used for verification)."""
        fprime, bias = self.folded(f)
        pooled = fprime.mean(dim=(2, 3)) if self.pool == "avg" else fprime.amax(dim=(2, 3))
        return pooled @ self.classifier.weight.t() + bias


@contextlib.contextmanager
def tap_features(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Capture ``module``'s forward output into the yielded list; the hook is always removed."""
    box: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
        box.clear()
        box.append(out)

    handle = module.register_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore every submodule's flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _verify(head: GapHead, model: nn.Module, x: torch.Tensor, rtol: float = 1e-3) -> float:
    """Return the relative error of recomputing logits through ``head`` (inf if it fails)."""
    try:
        with torch.no_grad():
            logits, f = head.run(model, x)
            if f.dim() != 4 or f.shape[1] != head.num_channels:
                return float("inf")
            rec = head.logits_from_features(f)
    except Exception:  # noqa: BLE001 - a candidate that cannot run is simply not the head
        return float("inf")
    if rec.shape != logits.shape:
        return float("inf")
    scale = logits.abs().max().clamp_min(1e-6)
    return float((rec - logits).abs().max() / scale)


def _probe_input(model: nn.Module, input_size: tuple[int, int]) -> torch.Tensor:
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *input_size, generator=g)
    return x.to(device=device, dtype=dtype)


def find_gap_head(model: nn.Module, input_size: tuple[int, int] = (224, 224),
                  tolerance: float = 1e-3) -> GapHead:
    """Find and verify the GAP -> linear head of ``model``.

    Raises :class:`UnsupportedHeadError` (naming the model class and the alternatives) when the
    model's logits are not a linear function of globally pooled spatial features.

    >>> import torch
    >>> from torchvision.models import resnet18
    >>> find_gap_head(resnet18(num_classes=10), input_size=(64, 64)).num_channels
    512
    """
    name = type(model).__name__
    with eval_mode(model):
        x = _probe_input(model, input_size)
        candidates: list[GapHead] = []
        from camloc.models.gapnet import GapNet

        if isinstance(model, GapNet):
            candidates.append(GapHead(model.classifier, pool=model.pool, method="gapnet",
                                      description="GapNet features -> pool -> classifier"))
        elif hasattr(model, "forward_features") and hasattr(model, "forward_head") \
                and hasattr(model, "get_classifier"):
            clf = model.get_classifier()
            if isinstance(clf, nn.Linear):
                norm = None
                head_mod = getattr(model, "head", None)
                if head_mod is not None and isinstance(getattr(head_mod, "norm", None), nn.LayerNorm):
                    norm = head_mod.norm
                pool_type = getattr(getattr(model, "global_pool", None), "pool_type", "avg")
                if pool_type in ("avg", "max", "", None):
                    pool: Literal["avg", "max"] = "max" if pool_type == "max" else "avg"
                    candidates.append(GapHead(clf, pool=pool, method="timm", norm=norm,
                                              description="timm forward_features -> forward_head"))
        # Declared heads first; the (slower) traced search only when they do not verify.
        for cand in candidates:
            if _verify(cand, model, x) <= tolerance:
                return cand
        for cand in _traced_candidates(model, x):
            if _verify(cand, model, x) <= tolerance:
                return cand
    raise UnsupportedHeadError(
        f"{name}: its logits are not a linear function of globally average-pooled spatial "
        f"features (no GAP -> linear head found and verified). {ALTERNATIVES}"
    )


def _traced_candidates(model: nn.Module, x: torch.Tensor) -> list[GapHead]:
    """Trace one pass: the last Linear producing the logits, preceded by 4-D feature maps."""
    order: list[tuple[nn.Module, torch.Tensor | None]] = []
    handles = []

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: object) -> None:
        t = out if isinstance(out, torch.Tensor) else None
        order.append((m, t.detach().clone() if t is not None and t.dim() == 4 else None))

    for m in model.modules():
        if m is not model:
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    except Exception:  # noqa: BLE001
        return []
    finally:
        for h in handles:
            h.remove()
    if isinstance(out, tuple):
        out = out[0]
    linears = [m for m, _ in order if isinstance(m, nn.Linear)]
    if not linears:
        return []
    clf = linears[-1]
    if not isinstance(out, torch.Tensor) or out.shape[-1] != clf.out_features:
        return []
    norms = [m for m, _ in order if isinstance(m, nn.LayerNorm)
             and tuple(m.normalized_shape) == (clf.in_features,)]
    norm = norms[-1] if norms else None
    seen: set[int] = set()
    cands: list[GapHead] = []
    for m, t in reversed(order):
        if t is None or t.shape[1] != clf.in_features or t.shape[2] * t.shape[3] < 2 or id(m) in seen:
            continue
        seen.add(id(m))
        for relu in (False, True):
            cands.append(GapHead(clf, feature_module=m, method="hook", post_relu=relu, norm=norm,
                                 description=f"traced: {type(m).__name__} -> GAP -> Linear"))
        if len(seen) >= 4:
            break
    return cands
