"""camloc: Class Activation Mapping and weakly-supervised object localization.

Three lines from an image to maps and boxes::

    import camloc
    model = camloc.load_model("efficientnet_lite0")          # offline ImageNet weights
    result = camloc.explain(model, "photo.jpg", top_k=3)      # logits, CAMs and boxes

``import camloc`` is light: the errors are imported eagerly, everything that needs torch
(``load_model``, ``explain``, ``Explanation``, ``CamModel``, ``wrap``) on first use.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from camloc.errors import (
    CamlocError,
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageError,
    MetricError,
    ModelError,
    UnsupportedHeadError,
    WeightsError,
)

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "CamModel": "camloc.models",
    "load_model": "camloc.models",
    "wrap": "camloc.models",
    "Explanation": "camloc.explain",
    "explain": "camloc.explain",
}

if TYPE_CHECKING:  # pragma: no cover
    from camloc.explain import Explanation, explain
    from camloc.models import CamModel, load_model, wrap

__all__ = [
    "__version__",
    "CamModel",
    "Explanation",
    "explain",
    "load_model",
    "wrap",
    "CamlocError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ImageError",
    "MetricError",
    "ModelError",
    "UnsupportedHeadError",
    "WeightsError",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'camloc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """``camloc.explain`` is both a subpackage and the function it defines. Importing the
    subpackage binds it on this package; that binding is left out, so ``camloc.explain`` stays
    the function (resolved on first use by :func:`__getattr__`, whichever is imported first)
    and importing ``camloc.explain.<module>`` stays light."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "explain" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
