"""Map methods on one engine: exact CAM, the gradient family, perturbation and projection methods.

Modules: ``engine`` (the context, the base class, class selection, fusion), ``exact`` (CAM),
``gradient`` (Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, Smooth Grad-CAM++),
``perturbation`` (Score-CAM, Ablation-CAM), ``projection`` (Eigen-CAM), ``postprocess``
(``upsample``, ``normalize``), ``registry`` (``METHODS``, ``make_method``), ``catalog`` (metadata,
torch-free). Names are imported lazily, so ``camloc.cams.catalog`` loads without torch.

>>> import torch, camloc
>>> from camloc.cams import make_method
>>> model = camloc.load_model("resnet18", weights=None, num_classes=10)
>>> make_method(model, "gradcam++").layers
['layer4']
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CAM": "exact", "CAMMethod": "engine", "CamContext": "engine", "CamOutput": "engine",
    "ClassSelection": "engine", "select_classes": "engine", "fuse_maps": "engine",
    "GradCAM": "gradient", "GradCAMpp": "gradient", "XGradCAM": "gradient", "HiResCAM": "gradient",
    "LayerCAM": "gradient", "SmoothGradCAMpp": "gradient", "ScoreCAM": "perturbation",
    "AblationCAM": "perturbation", "EigenCAM": "projection", "METHODS": "registry",
    "make_method": "registry", "normalize": "postprocess", "upsample": "postprocess",
    "CATALOG": "catalog", "MethodInfo": "catalog", "method_names": "catalog",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'camloc.cams' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"camloc.cams.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
