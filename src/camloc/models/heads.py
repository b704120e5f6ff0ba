"""Finding and verifying a model's GAP -> linear head (what exact CAM needs).

Exact CAM needs a layer whose output ``f`` (as an ``(N, K, h, w)`` map) becomes the logits by global
average pooling and one linear layer: ``logits = W mean_xy(f) + b``. camloc looks for it in the
model's own structure (camloc's :class:`~camloc.models.gapnet.GapNet`) or by tracing one forward pass,
and **verifies** the result numerically on probe inputs, to within float tolerance. The traced search
reads convolutional maps, channels-last maps (Swin, timm's NHWC stages) and transformer tokens
(pooled over the patch tokens); besides ``GAP -> Linear`` it recognises:

- a LayerNorm between pooling and the classifier (ConvNeXt, ViT with ``fc_norm``), folded exactly:
  with per-image scalars ``mu``, ``sigma`` of the pooled vector,
  ``W LN(mean f) + b = mean_xy[W gamma (f - mu)/sigma] + W beta + b``;
- a ReLU applied functionally between the layer and the pooling (DenseNet);
- a 1x1-convolution classifier followed by GAP (SqueezeNet): the class maps are that layer's
  output channels themselves, and ``logits = mean_xy(map)`` exactly (an identity "classifier").

A model without such a head (VGG and AlexNet with their FC stacks, MobileNetV3's MLP head,
class-token ViTs, any GAP -> MLP) has none: :func:`discover_gap_head` returns ``None`` with the
reason, and :func:`find_gap_head` raises :class:`~camloc.errors.UnsupportedHeadError`. Only exact CAM
needs the head; every other method works on any layer of any model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from camloc.devices import eval_mode
from camloc.errors import UnsupportedHeadError
from camloc.models.layers import (LayerTap, MapLayout, TraceRecord, declared_prefix, infer_layout,
                                  run_with_taps, trace_modules)
from camloc.models.outputs import OutputSelector
from camloc.models.pooling import global_pool

__all__ = ["GapHead", "HeadSearch", "discover_gap_head", "eval_mode", "find_gap_head", "tap_features"]

ALTERNATIVES = (
    "Exact CAM needs global average pooling followed by one linear layer. Alternatives: a "
    "gradient-based method (Grad-CAM family), converting the head to GAP and fine-tuning it "
    "(`camloc train --arch vgg16-gap`), or a linear probe on pooled features (`camloc probe`)."
)

#: How many distinct layers (from the last) the traced search verifies.
_MAX_CANDIDATES = 6


@dataclass
class GapHead:
    """Where a model's CAM features are and how they become logits.

    ``feature_module`` (named ``feature_name``) is the layer whose output, read with ``layout``
    (and through a ReLU when ``post_relu``), is pooled (``pool``), normalised by ``norm`` (a
    LayerNorm over channels, or None) and fed to ``classifier``. ``kind="class_maps"`` marks a
    1x1-convolution classifier: the features are the class maps and ``classifier`` is the identity.
    ``method`` says how the head was found (``"gapnet"``, ``"hook"`` for the traced search).
    """

    classifier: nn.Linear
    pool: Literal["avg", "max"] = "avg"
    feature_module: nn.Module | None = None
    method: Literal["hook", "timm", "gapnet"] = "hook"
    post_relu: bool = False
    norm: nn.Module | None = None
    description: str = ""
    feature_name: str = ""
    layout: MapLayout = field(default_factory=MapLayout)
    output: OutputSelector = None
    kind: Literal["linear", "class_maps"] = "linear"

    @property
    def num_channels(self) -> int:
        return int(self.classifier.in_features)

    @property
    def num_classes(self) -> int:
        return int(self.classifier.out_features)

    @property
    def tap(self) -> LayerTap:
        """The feature layer as a :class:`~camloc.models.layers.LayerTap` with its fixed layout."""
        if self.feature_module is None:  # pragma: no cover - every discovered head has one
            raise UnsupportedHeadError("this GapHead has no feature layer")
        return LayerTap(self.feature_name or "features", self.feature_module, layout=self.layout)

    def features_from_output(self, raw: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
        """The feature layer's raw output -> the ``(N, K, h, w)`` map that is pooled."""
        f = self.tap.to_map(raw, input_hw)
        return F.relu(f) if self.post_relu else f

    def run(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass: ``(logits, features)`` with features ready for pooling."""
        logits, (raw,) = run_with_taps(model, x, [self.tap], output=self.output)
        return logits, self.features_from_output(raw, (x.shape[-2], x.shape[-1]))

    def folded(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and per-image bias such that ``logits = W @ pool(f') + bias``.

        Without a norm this is ``(f, b)``; with a LayerNorm after pooling it is the exact fold.
        Returns ``f'`` (N, K, h, w) and ``bias`` (N, C).
        """
        w, b = self.classifier.weight, self.classifier.bias
        n = f.shape[0]
        bias = b if b is not None else torch.zeros(w.shape[0], device=f.device, dtype=f.dtype)
        if self.norm is None:
            return f, bias.to(f.dtype).expand(n, -1)
        pooled = global_pool(f, self.pool)
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
        pooled = global_pool(fprime, self.pool)
        return pooled @ self.classifier.weight.t().to(pooled.dtype) + bias


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


def _relative_error(rec: torch.Tensor, logits: torch.Tensor) -> float:
    if rec.shape != logits.shape or not bool(torch.isfinite(rec).all()):
        return float("inf")
    scale = logits.abs().max().clamp_min(1e-6)
    return float((rec - logits).abs().max() / scale)


def _verify(head: GapHead, model: nn.Module, x: torch.Tensor) -> float:
    """The relative error of recomputing the logits through ``head`` (inf if it fails)."""
    try:
        with torch.no_grad():
            logits, f = head.run(model, x)
            if f.shape[1] != head.num_channels:
                return float("inf")
            rec = head.logits_from_features(f)
    except Exception:  # noqa: BLE001 - a candidate that cannot run is simply not the head
        return float("inf")
    return _relative_error(rec, logits)


def _probe_input(model: nn.Module, input_size: tuple[int, int]) -> torch.Tensor:
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *input_size, generator=g)
    return x.to(device=device, dtype=dtype)


def _identity_classifier(num_classes: int, like: torch.Tensor) -> nn.Linear:
    eye = nn.Linear(num_classes, num_classes, bias=False)
    with torch.no_grad():
        eye.weight.copy_(torch.eye(num_classes))
    eye.requires_grad_(False)
    return eye.to(device=like.device, dtype=like.dtype)


@dataclass
class HeadSearch:
    """What :func:`discover_gap_head` found: the head (or None and why), and the traced shapes."""

    head: GapHead | None
    reason: str = ""
    records: list[TraceRecord] = field(default_factory=list)
    logits_shape: tuple[int, ...] = ()


def _candidates(model: nn.Module, x: torch.Tensor, output: OutputSelector, tolerance: float
                ) -> tuple[list[GapHead], str, list[TraceRecord], tuple[int, ...]]:
    """Trace: the layers whose pooled output could feed the last Linear (or be the class maps)."""
    # One pass copies the outputs whose channel count is some Linear's input size; a second pass
    # is needed only for a classifier without a Linear (1x1-conv class maps).
    widths = {int(m.in_features) for m in model.modules() if isinstance(m, nn.Linear)}

    def keep(t: torch.Tensor) -> bool:
        return t.dim() in (3, 4) and (int(t.shape[1]) in widths or int(t.shape[-1]) in widths)

    logits, records = trace_modules(model, x, keep=keep, output=output)
    num_classes = int(logits.shape[1])
    linears = [r for r in records if isinstance(r.module, nn.Linear) and r.shape[-1] == num_classes]
    clf: nn.Linear | None = linears[-1].module if linears else None  # type: ignore[assignment]
    k = int(clf.in_features) if clf is not None else num_classes
    input_hw = (x.shape[-2], x.shape[-1])
    prefix = declared_prefix(model)

    # Second pass: copy only the outputs whose channel count fits, from the last few layers. Records
    # returning the same tensor (a container and its last child, an Identity) form one group,
    # represented by its outermost member that is not an identity or dropout.
    groups: list[list[TraceRecord]] = []
    for rec in records:
        if rec.same_as_previous and groups:
            groups[-1].append(rec)
        else:
            groups.append([rec])
    wanted: list[TraceRecord] = []
    for group in reversed(groups):
        members = [r for r in group if not isinstance(r.module, (nn.Identity, nn.Dropout))]
        if not members:
            continue
        rec = members[-1]
        lay = infer_layout(rec.shape, input_hw, prefix)
        if lay is None or not _fits(rec.shape, lay, k):
            continue
        wanted.append(rec)
        if len(wanted) >= _MAX_CANDIDATES:
            break
    if not wanted:
        what = f"Linear({k} -> {num_classes})" if clf is not None else f"{num_classes} class maps"
        return [], f"no layer outputs a spatial map with the {k} channels of its {what}", records, \
            tuple(logits.shape)
    if clf is None:
        _, kept = trace_modules(model, x, keep=lambda t: True, only=[r.module for r in wanted],
                                output=output)
    else:
        kept = [r for r in records if r.value is not None]
    by_module: dict[int, torch.Tensor] = {}
    for rec in kept:
        by_module[id(rec.module)] = rec.value  # type: ignore[assignment]  # last call wins
    order = {id(r.module): i for i, r in enumerate(records)}
    norms = [(i, r.module) for i, r in enumerate(records) if isinstance(r.module, nn.LayerNorm)
             and tuple(r.module.normalized_shape) == (k,)]
    for rec in wanted:
        t = by_module.get(id(rec.module))
        if t is None:
            continue
        lay = infer_layout(t.shape, input_hw, prefix)
        if lay is None:
            continue
        later_norms = [m for i, m in norms if i > order[id(rec.module)]]
        norm_options: list[nn.Module | None] = [None] + ([later_norms[-1]] if later_norms else [])
        for norm in norm_options:
            for relu in (False, True):
                for pool in ("avg", "max"):
                    if clf is not None:
                        head = GapHead(clf, pool=pool, feature_module=rec.module, method="hook",  # type: ignore[arg-type]
                                       post_relu=relu, norm=norm, feature_name=rec.name, layout=lay,
                                       output=output, description=f"traced: {rec.name} -> "
                                       f"{'GAP' if pool == 'avg' else 'GMP'} -> Linear")
                    elif norm is None:
                        head = GapHead(_identity_classifier(num_classes, t), pool=pool,  # type: ignore[arg-type]
                                       feature_module=rec.module, post_relu=relu, feature_name=rec.name,
                                       layout=lay, output=output, kind="class_maps",
                                       description=f"traced: {rec.name} class maps -> GAP")
                    else:
                        continue
                    with torch.no_grad():
                        rec_logits = head.logits_from_features(head.features_from_output(t, input_hw))
                    if _relative_error(rec_logits, logits) <= tolerance:
                        return [head], "", records, tuple(logits.shape)  # the last layer that fits
    reason = (f"the logits are not a linear function of the globally pooled output of any of its "
              f"last layers ({', '.join(r.name for r in wanted)})")
    return [], reason, records, tuple(logits.shape)


def _fits(shape: tuple[int, ...], lay: MapLayout, k: int) -> bool:
    if lay.kind == "nchw":
        return shape[1] == k and shape[2] * shape[3] >= 2
    if lay.kind == "nhwc":
        return shape[3] == k and shape[1] * shape[2] >= 2
    return shape[2] == k and shape[1] - lay.prefix >= 2


def discover_gap_head(model: nn.Module, input_size: tuple[int, int] = (224, 224),
                      tolerance: float = 1e-3, output: OutputSelector = None) -> HeadSearch:
    """Look for a verified GAP -> linear head; never raises for a model that simply has none.

    Returns a :class:`HeadSearch` whose ``head`` is None (with ``reason``) when there is none. The
    model's train/eval flags are restored; nothing of it is changed.
    """
    from camloc.models.gapnet import GapNet

    with eval_mode(model):
        x = _probe_input(model, input_size)
        if isinstance(model, GapNet):
            head = GapHead(model.classifier, pool=model.pool, feature_module=model.features,  # type: ignore[arg-type]
                           method="gapnet", feature_name="features", output=output,
                           description="GapNet features -> pool -> classifier")
            if _verify(head, model, x) <= tolerance:
                return HeadSearch(head)
        try:
            cands, reason, records, shape = _candidates(model, x, output, tolerance)
        except Exception as exc:  # noqa: BLE001 - a model that cannot run on the probe input
            return HeadSearch(None, f"it does not run on a {input_size[0]}x{input_size[1]} probe input "
                                    f"({type(exc).__name__}: {exc})")
        if cands:  # verified on the traced pass itself
            return HeadSearch(cands[0], "", _drop_values(records), shape)
    return HeadSearch(None, reason, _drop_values(records), shape)


def _drop_values(records: list[TraceRecord]) -> list[TraceRecord]:
    for r in records:
        r.value = None
    return records


def find_gap_head(model: nn.Module, input_size: tuple[int, int] = (224, 224),
                  tolerance: float = 1e-3, output: OutputSelector = None) -> GapHead:
    """Find and verify the GAP -> linear head of ``model``.

    Raises :class:`UnsupportedHeadError` (naming the model class, the reason and the alternatives)
    when the model's logits are not a linear function of globally pooled spatial features.

    >>> from torchvision.models import resnet18
    >>> head = find_gap_head(resnet18(num_classes=10), input_size=(64, 64))
    >>> head.num_channels, head.feature_name
    (512, 'layer4')
    """
    found = discover_gap_head(model, input_size, tolerance, output)
    if found.head is None:
        raise UnsupportedHeadError(
            f"{type(model).__name__}: its logits are not a linear function of globally average-"
            f"pooled spatial features: {found.reason} (no GAP -> linear head found and verified). "
            f"{ALTERNATIVES}")
    return found.head
