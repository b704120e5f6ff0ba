"""Target layers: naming them, reading their outputs as maps, and running a model with taps.

A *target layer* is a submodule whose output every map method reads. camloc accepts it by name
(``"layer4"``, ``"blocks.11"``, ``"features.28"``; a negative index counts from the end:
``"blocks.-1.norm1"``), as the module itself, or as a list of either (fusion).

Its output becomes a map ``(N, C, h, w)`` by one of three layouts, chosen from the tensor's shape and
the input's size (:func:`infer_layout`):

``nchw``
    a convolutional map, used as is;
``nhwc``
    channels last (Swin, timm's NHWC stages): permuted to ``(N, C, h, w)``;
``tokens``
    a transformer's ``(N, T, C)`` tokens: the ``prefix`` tokens (class, distillation, register
    tokens; timm's ``num_prefix_tokens`` when the model declares it) are dropped and the rest are
    laid on the patch grid, whose shape follows the input's aspect ratio.

A ``reshape=`` callable ``f(output) -> (N, C, h, w)`` replaces this for custom layouts. It must only
select and rearrange elements (slicing, permuting, reshaping), because gradient methods apply the
same callable to the gradients. An output that fits no layout is an error naming the layer and the
shape.

>>> import torch
>>> infer_layout((2, 197, 192), (224, 224))
MapLayout(kind='tokens', prefix=1)
>>> infer_layout((2, 7, 7, 768), (224, 224))
MapLayout(kind='nhwc', prefix=0)
>>> infer_layout((2, 512, 7, 7), (224, 224)).to_map(torch.zeros(2, 512, 7, 7), (224, 224)).shape
torch.Size([2, 512, 7, 7])
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from camloc.errors import ConfigError, ModelError
from camloc.models.outputs import OutputSelector, select_output

__all__ = ["LayerSpec", "LayerTap", "MapLayout", "Reshape", "TraceRecord", "declared_prefix",
           "default_layer_names", "infer_layout", "is_skipped", "layer_name", "resolve_layers",
           "run_with_replaced", "run_with_taps", "spatially_relevant", "token_grid",
           "trace_modules"]

LayerSpec = str | nn.Module | Sequence[str | nn.Module] | None
Reshape = Callable[[torch.Tensor], torch.Tensor]

#: Largest number of prefix tokens tried when a model does not declare its own (class and
#: distillation tokens; models with register tokens declare them, as timm's do).
MAX_PREFIX = 2
#: Input stride along the two axes must agree to this fraction for a shape to count as a grid.
_STRIDE_TOL = 0.1


# --------------------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------------------


def _is_grid(h: int, w: int, input_hw: tuple[int, int]) -> bool:
    """Whether an ``h x w`` map can be the input ``H x W`` seen at one stride along both axes."""
    if h < 1 or w < 1 or h > input_hw[0] or w > input_hw[1]:
        return False
    sh, sw = input_hw[0] / h, input_hw[1] / w
    return abs(sh - sw) <= _STRIDE_TOL * max(sh, sw)


def token_grid(count: int, input_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The ``(h, w)`` patch grid holding ``count`` tokens for an ``H x W`` input, or None.

    >>> token_grid(196, (224, 224)), token_grid(280, (224, 320)), token_grid(195, (224, 224))
    ((14, 14), (14, 20), None)
    """
    if count < 1:
        return None
    h0 = math.sqrt(count * input_hw[0] / input_hw[1])
    for h in sorted({max(1, math.floor(h0)), max(1, math.ceil(h0)), max(1, round(h0))}):
        if count % h == 0 and _is_grid(h, count // h, input_hw):
            return h, count // h
    return None


@dataclass(frozen=True)
class MapLayout:
    """How a layer's output tensor is laid out (see the module docstring)."""

    kind: Literal["nchw", "nhwc", "tokens"] = "nchw"
    prefix: int = 0

    def to_map(self, t: torch.Tensor, input_hw: tuple[int, int], name: str = "layer") -> torch.Tensor:
        """``t`` as an ``(N, C, h, w)`` map (a view where possible)."""
        if self.kind in ("nchw", "nhwc"):
            if t.dim() != 4:
                raise ModelError(f"layer {name!r}: expected a 4-D output for layout {self.kind}, got "
                                 f"shape {tuple(t.shape)}")
            return t if self.kind == "nchw" else t.permute(0, 3, 1, 2)
        if t.dim() != 3:
            raise ModelError(f"layer {name!r}: expected (N, tokens, channels), got shape {tuple(t.shape)}")
        n, count, c = t.shape
        grid = token_grid(count - self.prefix, input_hw)
        if grid is None:
            raise ModelError(f"layer {name!r}: {count} tokens minus {self.prefix} prefix tokens do not "
                             f"form a patch grid for a {input_hw[0]}x{input_hw[1]} input; pass "
                             f"reshape= for this layout")
        return t[:, self.prefix:].transpose(1, 2).reshape(n, c, grid[0], grid[1])


def infer_layout(shape: Sequence[int], input_hw: tuple[int, int],
                 prefix: int | None = None) -> MapLayout | None:
    """The layout of a layer output of ``shape`` for an ``H x W`` input, or None if it is not a map.

    4-D: ``nchw`` when its last two axes are a grid of the input, else ``nhwc`` when its middle two
    are. 3-D ``(N, T, C)``: tokens; ``prefix`` (the model's declared prefix-token count) is tried
    first, then 0 to 8, and the first that leaves a patch grid wins.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:
        if _is_grid(shape[2], shape[3], input_hw):
            return MapLayout("nchw")
        if _is_grid(shape[1], shape[2], input_hw):
            return MapLayout("nhwc")
        return None
    if len(shape) == 3:
        tries = ([prefix] if prefix is not None else []) + list(range(MAX_PREFIX + 1))
        for p in tries:
            if 0 <= p < shape[1] and token_grid(shape[1] - p, input_hw) is not None:
                return MapLayout("tokens", p)
    return None


def declared_prefix(model: nn.Module) -> int | None:
    """How many prefix tokens the model says it prepends (timm's ``num_prefix_tokens``; 1 for
    torchvision's VisionTransformer), or None."""
    p = getattr(model, "num_prefix_tokens", None)
    if isinstance(p, int) and not isinstance(p, bool) and p >= 0:
        return p
    if isinstance(getattr(model, "class_token", None), torch.Tensor):
        return 1
    return None


# --------------------------------------------------------------------------------------------------
# naming layers
# --------------------------------------------------------------------------------------------------


def layer_name(root: nn.Module, module: nn.Module) -> str:
    """The dotted name of ``module`` inside ``root`` (ConfigError if it is not part of it)."""
    for n, m in root.named_modules():
        if m is module:
            return n
    raise ConfigError(f"layer: the module {type(module).__name__} is not part of the model")


def _get(root: nn.Module, name: str) -> tuple[str, nn.Module]:
    cur, parts = root, []
    for part in name.split("."):
        children = dict(cur.named_children())
        if part in children:
            cur = children[part]
            parts.append(part)
            continue
        if part.lstrip("-").isdigit() and children:
            keys = list(children)
            i = int(part)
            if -len(keys) <= i < len(keys):
                key = keys[i]
                cur = children[key]
                parts.append(key)
                continue
        names = [n for n, _ in root.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
            f"; its top-level layers are {', '.join(list(dict(root.named_children()))[:12])}"
        raise ConfigError(f"layer={name!r}: no such layer in {type(root).__name__}{hint}")
    return ".".join(parts), cur


def resolve_layers(root: nn.Module, layer: LayerSpec) -> list[tuple[str, nn.Module]]:
    """``layer`` (a name, a module, or a list of either) -> ``[(name, module), ...]``.

    >>> from torchvision.models import resnet18
    >>> [n for n, _ in resolve_layers(resnet18(), ["layer4", "layer3.-1"])]
    ['layer4', 'layer3.1']
    """
    if layer is None:
        raise ConfigError("layer: none given")
    items: Sequence[Any] = [layer] if isinstance(layer, (str, nn.Module)) else list(layer)
    if not items:
        raise ConfigError("layer: an empty list; give at least one layer name")
    out: list[tuple[str, nn.Module]] = []
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                raise ConfigError("layer: an empty name")
            name, mod = _get(root, item.strip())
        elif isinstance(item, nn.Module):
            mod = item
            name = layer_name(root, item)
        else:
            raise ConfigError(f"layer={item!r}: expected a layer name or a module")
        if mod is root:
            raise ConfigError("layer: the whole model is not a layer; name one of its submodules")
        if all(m is not mod for _, m in out):
            out.append((name, mod))
    return out


@dataclass
class LayerTap:
    """A resolved target layer: its name, module, and how its output becomes a map."""

    name: str
    module: nn.Module
    reshape: Reshape | None = None
    prefix: int | None = None  # the model's declared prefix-token count
    layout: MapLayout | None = None  # fixed layout; None: inferred from each output

    def to_map(self, t: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
        """The layer output ``t`` as an ``(N, C, h, w)`` map, or a ModelError naming the layer."""
        if self.reshape is not None:
            m = self.reshape(t)
            if not isinstance(m, torch.Tensor) or m.dim() != 4 or m.shape[0] != t.shape[0]:
                raise ModelError(f"layer {self.name!r}: reshape= must return (N, C, h, w); got "
                                 f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__}")
            return m
        layout = self.layout or infer_layout(t.shape, input_hw, self.prefix)
        if layout is None:
            raise ModelError(
                f"layer {self.name!r} outputs shape {tuple(t.shape)}, which is not a spatial map for "
                f"a {input_hw[0]}x{input_hw[1]} input (expected (N, C, h, w), (N, h, w, C) or tokens "
                f"(N, T, C)); choose a layer before the global pooling or pass reshape=")
        return layout.to_map(t, input_hw, self.name)


# --------------------------------------------------------------------------------------------------
# running a model with taps
# --------------------------------------------------------------------------------------------------


def run_with_taps(module: nn.Module, x: torch.Tensor, taps: Sequence[LayerTap], *, grad: bool = False,
                  output: OutputSelector = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One forward pass: ``(logits, raw outputs of the taps)``. Hooks are always removed.

    ``grad=True`` runs the trunk below the first tap without autograd: its hook switches grad mode
    on and hands the rest of the network a copy of a detached leaf, so gradients flow from the logits
    down to the tapped outputs and no further. The previous grad mode is restored in ``finally``.
    Each hook returns a copy of the output, so in-place operations downstream (``ReLU(inplace=True)``)
    cannot change what was tapped. A module called several times in one pass keeps its last output.
    """
    raws: list[torch.Tensor | None] = [None] * len(taps)

    def make_hook(i: int) -> Callable[..., torch.Tensor]:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> torch.Tensor:
            if not isinstance(out, torch.Tensor):
                raise ModelError(f"layer {taps[i].name!r} returns a {type(out).__name__}, not a tensor; "
                                 f"choose one of its submodules")
            if grad and not torch.is_grad_enabled():
                leaf = out.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
                raws[i] = leaf
                return leaf.clone()
            raws[i] = out
            return out.clone()

        return hook

    prev = torch.is_grad_enabled()
    handles = [t.module.register_forward_hook(make_hook(i)) for i, t in enumerate(taps)]
    try:
        if grad:
            torch.set_grad_enabled(False)
        out = module(x)
        logits = select_output(out, output)
    finally:
        for h in handles:
            h.remove()
        torch.set_grad_enabled(prev)
    missing = [t.name for t, r in zip(taps, raws) if r is None]
    if missing:
        raise ModelError(f"layer(s) {missing} did not run during the forward pass; choose layers the "
                         f"model uses to compute its logits")
    return logits, raws  # type: ignore[return-value]


def run_with_replaced(module: nn.Module, x: torch.Tensor, tap: LayerTap, value: torch.Tensor,
                      output: OutputSelector = None) -> torch.Tensor:
    """The logits when ``tap``'s output is replaced by ``value`` (a batch; ``x`` may be a batch of
    one that broadcasts). No autograd; the hook is always removed."""

    def hook(_m: nn.Module, _inp: Any, _out: Any) -> torch.Tensor:
        return value

    handle = tap.module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return select_output(module(x), output)
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------------------
# tracing: what every module outputs, in the order they finish
# --------------------------------------------------------------------------------------------------


@dataclass
class TraceRecord:
    """One module's output during a traced forward pass."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    #: the same tensor as the previous record's (a container returning its last child's output)
    same_as_previous: bool = False
    value: torch.Tensor | None = field(default=None, repr=False)


def trace_modules(module: nn.Module, x: torch.Tensor, keep: Callable[[torch.Tensor], bool] | None = None,
                  only: Sequence[nn.Module] | None = None, output: OutputSelector = None
                  ) -> tuple[torch.Tensor, list[TraceRecord]]:
    """Run ``module`` once (no autograd) recording every submodule's tensor output in completion
    order; ``keep(t)`` says which outputs to copy into ``value``. ``only`` restricts the hooks."""
    records: list[TraceRecord] = []
    names = {id(m): n for n, m in module.named_modules()}
    targets = list(only) if only is not None else [m for m in module.modules() if m is not module]
    last: list[Any] = [None]  # the previous output, to spot containers returning it again

    def hook(m: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            keep_it = keep is not None and keep(out)
            records.append(TraceRecord(names.get(id(m), "?"), m, tuple(out.shape), out is last[0],
                                       out.detach().clone() if keep_it else None))
            last[0] = out

    handles = [m.register_forward_hook(hook) for m in targets]
    try:
        with torch.no_grad():
            logits = select_output(module(x), output)
    finally:
        for h in handles:
            h.remove()
        last.clear()
    return logits, records


_SKIP_TYPES = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
               nn.Flatten)


def is_skipped(m: nn.Module) -> bool:
    """Whether ``m`` is a module whose output is never a map of its own (identity, dropout,
    adaptive pooling, flatten, drop-path): layer searches pass over it."""
    return isinstance(m, _SKIP_TYPES) or "AdaptivePool" in type(m).__name__ \
        or type(m).__name__ in ("DropPath", "Identity")


def _vit_layer(model: nn.Module) -> str | None:
    """The last block's normalised input tokens of a class-token ViT (timm or torchvision).

    With class-token pooling the patch tokens *leaving* the last block no longer reach the logits
    (their gradients are zero), so the tokens entering that block's attention are the last ones
    that carry spatial evidence.
    """
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) \
            and getattr(model, "global_pool", None) in ("token", "") \
            and (declared_prefix(model) or 0) > 0:
        last = f"blocks.{len(blocks) - 1}"
        return f"{last}.norm1" if isinstance(getattr(blocks[-1], "norm1", None), nn.Module) else last
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layers", None)
    if isinstance(getattr(model, "class_token", None), torch.Tensor) and isinstance(layers, nn.Sequential) \
            and len(layers):
        last_name = list(dict(layers.named_children()))[-1]
        base = f"encoder.layers.{last_name}"
        return f"{base}.ln_1" if isinstance(getattr(layers[-1], "ln_1", None), nn.Module) else base
    return None


def _positions(shape: tuple[int, ...], lay: MapLayout, input_hw: tuple[int, int]) -> int:
    if lay.kind == "tokens":
        grid = token_grid(shape[1] - lay.prefix, input_hw)
        return grid[0] * grid[1] if grid else 0
    return shape[2] * shape[3] if lay.kind == "nchw" else shape[1] * shape[2]


def spatially_relevant(module: nn.Module, x: torch.Tensor, tap: LayerTap,
                       output: OutputSelector = None) -> bool:
    """Whether the logits depend on ``tap``'s map positions at all (one backward from the logits).

    A class-token transformer's last tokens fail this: only the class token reaches the head.
    """
    logits, (raw,) = run_with_taps(module, x, [tap], grad=True, output=output)
    (g,) = torch.autograd.grad(logits.sum(), raw, allow_unused=True)
    return g is not None and bool(tap.to_map(g, (x.shape[-2], x.shape[-1])).abs().amax() > 0)


def default_layer_names(model: nn.Module, records: Sequence[TraceRecord], input_hw: tuple[int, int],
                        head_layer: str | None = None,
                        relevant: Callable[[str], bool] | None = None) -> list[str]:
    """The automatic target layer (see docs/methods.md, "Target layers").

    1. a verified GAP head's feature layer (what exact CAM reads);
    2. class-token transformers (timm, torchvision): the last block's normalised input tokens
       (:func:`_vit_layer`);
    3. otherwise the last module, in the order modules finish, whose output is a spatial map with
       more than one position (identity, dropout and adaptive-pooling modules skipped; of a
       container and the last child whose output it returns, the container). For token outputs,
       only layers as wide as the last token layer (the residual stream) qualify, and the first
       whose positions the logits depend on wins (``relevant(name)``), so a class-token model of
       any family gets a layer whose patch tokens still matter.
    """
    if head_layer:
        return [head_layer]
    vit = _vit_layer(model)
    if vit is not None:
        return [resolve_layers(model, vit)[0][0]]
    prefix = declared_prefix(model)
    width: int | None = None
    tried = 0
    for rec in reversed(records):  # a container finishes after its children: outermost first
        if is_skipped(rec.module):
            continue
        lay = infer_layout(rec.shape, input_hw, prefix)
        if lay is None or _positions(rec.shape, lay, input_hw) < 2:
            continue
        if lay.kind != "tokens":
            if width is None:
                return [rec.name]
            continue
        if width is None:
            width = rec.shape[-1]
        if rec.shape[-1] != width:
            continue
        if relevant is None or relevant(rec.name):
            return [rec.name]
        tried += 1
        if tried >= 24:
            break
    raise ModelError(f"{type(model).__name__}: no layer outputs a spatial map the logits depend on at "
                     f"input size {input_hw[0]}x{input_hw[1]}; name one with layer= (and reshape= for "
                     f"a custom layout)")
