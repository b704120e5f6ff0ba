"""``load_model`` and ``wrap``: a classifier with its spec, target layers and (optional) GAP head.

:func:`load_model` builds a named model (see :mod:`camloc.models.zoo`) or a camloc checkpoint folder
(``spec.json`` + ``model.safetensors``, written by ``camloc train``); :func:`wrap` takes any
``nn.Module`` you already have. Both return a :class:`CamModel`:

- ``head``: the verified GAP -> linear head (:mod:`camloc.models.heads`), or ``None`` for models
  without one (VGG, MobileNetV3, class-token ViTs, GAP -> MLP heads). Only the exact ``cam`` method
  needs it; every other method runs on any model.
- ``layers``: the default target layer(s), chosen automatically per family unless given
  (:func:`camloc.models.layers.default_layer_names`) and reported in every result.
- ``output``: which part of ``forward``'s return value holds the logits (a key, an index or a
  callable) for models returning a dict, tuple or ``ModelOutput``.

``head=DIR`` replaces the classifier with a linear probe written by ``camloc probe``.

>>> import camloc
>>> m = camloc.load_model("efficientnet_lite0")
>>> m.spec.num_classes, m.head.num_channels, m.layers
(1000, 1280, ['bn2'])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camloc.devices import resolve_device
from camloc.errors import CamlocError, CheckpointError, ConfigError, ModelError
from camloc.models.heads import GapHead, HeadSearch, discover_gap_head, eval_mode
from camloc.models.layers import (LayerSpec, LayerTap, Reshape, declared_prefix, default_layer_names,
                                  resolve_layers, spatially_relevant, trace_modules)
from camloc.models.outputs import OutputSelector, check_output_selector, select_output
from camloc.models.spec import ModelSpec, Preprocess
from camloc.models.zoo import (DEFAULT_MODEL, OFFLINE_ALIASES, build_zoo_model, check_finite,
                               imagenet_class_names, load_into, load_state_dict_file, resolve_zoo_name)

__all__ = ["CamModel", "DEFAULT_MODEL", "apply_head_dir", "imagenet_class_names", "load_model",
           "load_state_dict_file", "resolve_device", "resolve_zoo_name", "wrap"]


@dataclass
class CamModel:
    """A classifier ready for class activation maps.

    ``module`` is the network, ``spec`` its preprocessing and class names, ``head`` its verified
    GAP -> linear head or ``None``, ``layers`` the default target layer names, ``output`` the
    selector of its logits, ``reshape`` an optional custom layout of the target layers' outputs,
    and ``head_reason`` why there is no head (for the message of methods that need one).
    """

    module: nn.Module
    spec: ModelSpec
    head: GapHead | None = None
    info: dict[str, Any] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    output: OutputSelector = None
    reshape: Reshape | None = None
    head_reason: str = ""

    def __post_init__(self) -> None:
        if not self.layers and self.head is not None and self.head.feature_name:
            self.layers = [self.head.feature_name]
        if self.head is not None and self.output is None:
            self.output = self.head.output

    @property
    def device(self) -> torch.device:
        try:
            return next(self.module.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def to(self, device: str | torch.device) -> CamModel:
        """Move the module to ``device`` (in place) and return self."""
        self.module.to(resolve_device(device))
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(N, num_classes)`` logits of the batch ``x`` (selected with ``output``)."""
        return select_output(self.module(x), self.output)

    __call__ = logits

    def taps(self, layer: LayerSpec = None, reshape: Reshape | None = None) -> list[LayerTap]:
        """The target layers ``layer`` (default: :attr:`layers`) resolved to taps."""
        spec = layer if layer is not None else self.layers
        if not spec:
            raise ConfigError(f"{self.spec.name}: no default target layer; pass layer=")
        prefix = declared_prefix(self.module)
        return [LayerTap(name, mod, reshape or self.reshape, prefix)
                for name, mod in resolve_layers(self.module, spec)]

    def __repr__(self) -> str:
        head = f"channels={self.head.num_channels}" if self.head is not None else "head=None"
        return (f"CamModel(name={self.spec.name!r}, classes={self.spec.num_classes}, {head}, "
                f"layers={self.layers}, device={self.device})")


def _spec_int(d: dict[str, Any], key: str, where: Path, high: int) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise CheckpointError(f"{where}: {key} must be a positive integer no larger than "
                              f"{high}, got {value!r}")
    return value


def _weights_file(folder: Path, name: object, spec_path: Path) -> Path:
    """``folder/name`` for spec.json's ``weights_file``, refused (:class:`CheckpointError`) unless
    it is a file name inside the model folder: an absolute path, ``..``, or a link leading out
    of the folder would read a file the user did not name."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise CheckpointError(f"{spec_path}: weights_file must be a file name inside the model "
                              f"folder, got {name!r}")
    path = folder / name
    root = folder.resolve()
    try:
        inside = not Path(name).is_absolute() and path.resolve().is_relative_to(root) \
            and path.resolve() != root
    except (OSError, RuntimeError):  # a link loop
        inside = False
    if not inside:
        raise CheckpointError(f"{spec_path}: weights_file {name!r} is outside the model folder "
                              f"{folder}; it must name a file inside it (e.g. model.safetensors)")
    return path


def _camloc_checkpoint(folder: Path, weights: Any) -> tuple[nn.Module, ModelSpec]:
    spec_path = folder / "spec.json"
    try:
        d = json.loads(spec_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{spec_path}: cannot read model spec ({exc})") from exc
    if not isinstance(d, dict):
        raise CheckpointError(f"{spec_path}: expected a JSON object")
    from camloc.models.archs import build_arch

    for key in ("arch", "num_classes"):
        if key not in d:
            raise CheckpointError(f"{spec_path}: missing key {key!r}")
    wfile_in_folder = _weights_file(folder, d.get("weights_file", "model.safetensors"), spec_path)
    from camloc.models.archs import MAX_NUM_CLASSES

    nc = _spec_int(d, "num_classes", spec_path, MAX_NUM_CLASSES)
    kwargs = d.get("arch_kwargs", {})
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{spec_path}: arch_kwargs must be an object")
    try:
        model = build_arch(d["arch"], num_classes=nc, pool=d.get("pool", "avg"), pretrained=False,
                           **kwargs)
    except ConfigError as exc:
        field = next((f"arch_kwargs.{k}: " for k in kwargs if str(exc).startswith(f"{k}=")), "")
        raise CheckpointError(f"{spec_path}: {field}{exc}") from exc
    wfile = Path(weights) if isinstance(weights, (str, os.PathLike)) and weights not in ("DEFAULT",) \
        else wfile_in_folder
    load_into(model, load_state_dict_file(wfile), str(wfile))
    check_finite(model, str(wfile), CheckpointError)
    try:
        pre = Preprocess.from_dict(d.get("preprocess", {}))
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{spec_path}: preprocess: {exc}") from exc
    names = d.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != nc):
        raise CheckpointError(f"{spec_path}: class_names must be a list of {nc} names (num_classes), "
                              f"got {len(names) if isinstance(names, list) else type(names).__name__}")
    classes = [str(c) for c in names] if names else [f"class_{i}" for i in range(nc)]
    spec = ModelSpec(d.get("name", folder.name), nc, classes, pre, str(folder),
                     extra={"arch": d["arch"], "pool": d.get("pool", "avg")})
    return model, spec


def _same_backbone(a: str, b: str) -> bool:
    def norm(x: str) -> str:
        p = Path(x)
        if p.is_dir():
            return str(p.resolve())
        return x.removeprefix("tv:").removeprefix("timm:")

    return norm(a) == norm(b)


def apply_head_dir(model: nn.Module, spec: ModelSpec, head: GapHead | None, head_dir: Path,
                   backbone: str | None = None) -> None:
    """Swap the verified classifier's weights for a probe head's (``camloc probe`` output)."""
    meta_path = head_dir / "head.json"
    w_path = head_dir / "head.safetensors"
    try:
        meta = json.loads(meta_path.read_text())
        from safetensors.torch import load_file

        tensors = load_file(str(w_path))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{head_dir}: not a camloc head folder ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format", "camloc-head") != "camloc-head":
        raise CheckpointError(f"{meta_path}: format is not 'camloc-head'")
    if head is None or head.kind != "linear":
        raise CheckpointError(f"{head_dir}: a probe head replaces a GAP -> linear classifier, and "
                              f"{spec.name} has none to replace")
    fitted_on = meta.get("backbone")
    if backbone is not None and fitted_on and not _same_backbone(str(fitted_on), backbone):
        raise CheckpointError(f"{head_dir}: this head was fitted on {fitted_on!r}, not {backbone!r}; "
                              f"load it with load_model({fitted_on!r}, head=...)")
    w, b = tensors.get("weight"), tensors.get("bias")
    if w is None or w.dim() != 2 or w.shape[1] != head.num_channels:
        raise CheckpointError(f"{w_path}: weight must be (classes, {head.num_channels}); got "
                              f"{None if w is None else tuple(w.shape)}")
    if b is not None and tuple(b.shape) != (w.shape[0],):
        raise CheckpointError(f"{w_path}: bias must be ({w.shape[0]},); got {tuple(b.shape)}")
    for key, t in (("weight", w), ("bias", b)):
        if t is not None and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{w_path}: {key} holds NaN or infinite values; refit the probe")
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != w.shape[0]):
        raise CheckpointError(f"{meta_path}: class_names must list {w.shape[0]} names (the weight's "
                              f"rows)")
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    new.to(head.classifier.weight.device)
    _replace_module(model, head.classifier, new)
    head.classifier = new  # head.norm stays: a probe is fitted on the vector the classifier sees
    spec.num_classes = int(w.shape[0])
    spec.class_names = [str(c) for c in names] if names else [f"class_{i}" for i in range(w.shape[0])]
    spec.extra["head"] = str(head_dir)


def _replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in root.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return
    raise CheckpointError("could not locate the classifier to replace")


def _finish(module: nn.Module, spec: ModelSpec, layer: LayerSpec, output: OutputSelector,
            reshape: Reshape | None, info: dict[str, Any], head_dir: Path | None = None,
            backbone: str | None = None) -> CamModel:
    """Discover the head, apply a probe head, choose the default layers: the common tail of
    :func:`load_model` and :func:`wrap`."""
    size = spec.preprocess.input_size
    found = _search_head(module, size, output)
    if head_dir is not None:
        apply_head_dir(module, spec, found.head, head_dir, backbone=backbone)
    records = found.records
    if layer is not None:
        names = [n for n, _ in resolve_layers(module, layer)]
    elif found.head is not None and found.head.feature_name:
        names = [found.head.feature_name]
    else:
        with eval_mode(module):
            x = _probe(module, size)
            try:
                if not records:
                    _, records = trace_modules(module, x, output=output)

                def relevant(name: str) -> bool:
                    tap = LayerTap(name, module.get_submodule(name), reshape, declared_prefix(module))
                    return spatially_relevant(module, x, tap, output)

                names = default_layer_names(module, records, size, None, relevant)
            except CamlocError:
                raise
            except Exception as exc:  # noqa: BLE001 - the user's model failed on a probe
                raise ModelError(f"{spec.name}: the model does not run on a {size[0]}x{size[1]} "
                                 f"input ({type(exc).__name__}: {exc}); set input_size") from exc
    if found.head is not None and found.logits_shape and found.logits_shape[1] != spec.num_classes \
            and head_dir is None:
        raise ModelError(f"{spec.name}: the model gives {found.logits_shape[1]} logits but its spec "
                         f"names {spec.num_classes} classes")
    return CamModel(module, spec, found.head, info, names, output, reshape, found.reason)


#: The smallest side of the quick head search (see :func:`_search_head`).
_QUICK_MIN_SIDE = 64


def _search_head(module: nn.Module, size: tuple[int, int], output: OutputSelector) -> HeadSearch:
    """:func:`discover_gap_head` at about half the input side first (a quarter of the work).

    Whether the logits are ``W mean_xy(f) + b`` is a property of the architecture, and the search
    verifies it numerically at whatever size it runs, on maps of at least two positions. The quick
    result is kept only when it cannot differ from the full-size one: a channels-first head, and no
    later layer whose output could be a map of the head's width at another size (a channels-last
    or token layout the quick size did not recognise). Anything else -- no head, another layout,
    a model that needs its own input size -- is searched again at ``size``.
    """
    quick = (max(_QUICK_MIN_SIDE, size[0] // 2), max(_QUICK_MIN_SIDE, size[1] // 2))
    if quick[0] < size[0] and quick[1] < size[1]:
        found = discover_gap_head(module, quick, output=output)
        if found.head is not None and _quick_head_is_final(found):
            return found
    return discover_gap_head(module, size, output=output)


def _quick_head_is_final(found: HeadSearch) -> bool:
    head = found.head
    if head is None or head.layout.kind != "nchw" or head.feature_module is None:
        return False
    k = head.num_channels
    at = [i for i, r in enumerate(found.records) if r.module is head.feature_module]
    if not at:
        return False
    later = found.records[at[-1] + 1:]
    while later and later[0].same_as_previous:  # the feature layer's own tensor (a container)
        later = later[1:]

    def could_be_map(s: tuple[int, ...]) -> bool:
        if len(s) == 4:
            return (s[1] == k and s[2] * s[3] >= 2) or (s[3] == k and s[1] * s[2] >= 2)
        return len(s) == 3 and s[2] == k and s[1] >= 2

    return not any(could_be_map(tuple(r.shape)) for r in later)


def _probe(module: nn.Module, size: tuple[int, int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, *size, generator=g)
    return x.to(device=_device_of(module), dtype=_dtype_of(module))


def _device_of(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _dtype_of(module: nn.Module) -> torch.dtype:
    p = next(iter(module.parameters()), None)
    return p.dtype if p is not None and p.is_floating_point() else torch.float32


def load_model(name: str | os.PathLike[str] = DEFAULT_MODEL, weights: Any = "DEFAULT",
               device: str | torch.device = "cpu", head: str | os.PathLike[str] | None = None,
               num_classes: int | None = None, *, layer: LayerSpec = None,
               output: OutputSelector = None, reshape: Reshape | None = None) -> CamModel:
    """Load a classifier with its spec, default target layer and (when it has one) verified GAP head.

    Args:
        name: ``"efficientnet_lite0"`` (offline default), a torchvision/timm model name (optionally
            prefixed ``tv:`` or ``timm:``), or a camloc checkpoint folder.
        weights: ``"DEFAULT"`` for the published weights, a local weights file, or ``None`` for
            random initialisation.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        head: a folder written by ``camloc probe`` whose linear layer replaces the classifier.
        num_classes: only with ``weights=None`` or a local file: the classifier's size.
        layer: default target layer(s) for every method but ``cam`` (a name, module or list);
            automatic when omitted (see :attr:`CamModel.layers`).
        output: which part of the model's output holds the logits (key, index or callable).
        reshape: a custom ``f(layer_output) -> (N, C, h, w)`` for the target layers.

    Models without a GAP -> linear head (VGG, AlexNet, MobileNetV3, ViT, ...) load with
    ``head=None``; only the exact ``cam`` method refuses them.

    Raises:
        WeightsError: weights cannot be downloaded, do not fit, or hold NaN/inf values.
        CheckpointError: a checkpoint or probe-head folder is incomplete or inconsistent.
        ConfigError: unknown name, device or layer.
    """
    dev = resolve_device(device)
    check_output_selector(output)
    key = str(name)
    path = Path(key)
    if key not in OFFLINE_ALIASES and path.is_dir():
        if not (path / "spec.json").is_file():
            raise CheckpointError(f"{path}: a model folder needs spec.json and model.safetensors")
        model, spec = _camloc_checkpoint(path, weights)
    else:
        model, spec = build_zoo_model(key, weights, num_classes)
        if weights is not None:
            check_finite(model, spec.source or key)
    model.eval()
    model.to(dev)
    return _finish(model, spec, layer, output, reshape, {"name": key},
                   Path(head) if head is not None else None, backbone=key)


def wrap(module: nn.Module, preprocess: Preprocess | dict[str, Any] | None = None, *,
         layer: LayerSpec = None, output: OutputSelector = None,
         class_names: Sequence[str] | None = None, input_size: tuple[int, int] | None = None,
         reshape: Reshape | None = None, name: str | None = None) -> CamModel:
    """Make any classifier ``nn.Module`` usable by every camloc method.

    Args:
        module: the network (left on its device, its train/eval flags untouched).
        preprocess: a :class:`~camloc.models.spec.Preprocess` (or its dict) describing its input;
            default: ImageNet mean/std at ``input_size``.
        layer: target layer(s) by name or module; automatic when omitted.
        output: where the logits are in ``module``'s return value (key, index or callable).
        class_names: one name per logit; default ``class_0 ...``.
        input_size: ``(height, width)`` of its input when ``preprocess`` is not given.
        reshape: a custom ``f(layer_output) -> (N, C, h, w)`` for the target layers.
        name: a display name (default: the module's class name).

    >>> import torch, camloc
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    >>> m = camloc.wrap(net, input_size=(32, 32))
    >>> m.layers, m.head.feature_name, m.spec.num_classes
    (['1'], '1', 4)
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    check_output_selector(output)
    if isinstance(preprocess, dict):
        try:
            preprocess = Preprocess.from_dict(preprocess)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"preprocess: {exc}") from exc
    if preprocess is not None and not isinstance(preprocess, Preprocess):
        raise ConfigError("preprocess: expected a camloc Preprocess or a dict of its fields")
    if input_size is not None:
        if len(tuple(input_size)) != 2 or any(int(s) < 1 for s in input_size):
            raise ConfigError(f"input_size={input_size!r}: expected (height, width)")
        preprocess = (preprocess or Preprocess()).with_(input_size=tuple(int(s) for s in input_size))
    pre = preprocess or Preprocess()
    check_finite(module, name or type(module).__name__, ModelError)
    with eval_mode(module):
        x = torch.zeros(1, 3, *pre.input_size, device=_device_of(module), dtype=_dtype_of(module))
        try:
            with torch.no_grad():
                logits = select_output(module(x), output)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model failed on a probe
            raise ModelError(f"{name or type(module).__name__}: the model does not run on a "
                             f"{pre.input_size[0]}x{pre.input_size[1]} input ({type(exc).__name__}: "
                             f"{exc}); set input_size or preprocess") from exc
    nc = int(logits.shape[1])
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(nc)]
    if len(names) != nc:
        raise ConfigError(f"class_names: {len(names)} names for a model with {nc} logits")
    spec = ModelSpec(name or type(module).__name__, nc, [str(c) for c in names], pre, "wrapped")
    return _finish(module, spec, layer, output, reshape, {"name": spec.name})
