"""The method registry: ``METHODS`` (name -> class) and :func:`make_method`.

Names and metadata come from :mod:`camloc.cams.catalog`; ``camloc methods`` lists them.

>>> sorted(METHODS)[:3]
['ablationcam', 'cam', 'eigencam']
"""

from __future__ import annotations

from typing import Any

from camloc.cams.catalog import CATALOG
from camloc.cams.engine import CAMMethod
from camloc.cams.exact import CAM
from camloc.cams.gradient import GradCAM, GradCAMpp, HiResCAM, LayerCAM, SmoothGradCAMpp, XGradCAM
from camloc.cams.perturbation import AblationCAM, ScoreCAM
from camloc.cams.projection import EigenCAM
from camloc.errors import ConfigError
from camloc.models.layers import LayerSpec
from camloc.models.loader import CamModel

__all__ = ["METHODS", "make_method"]

#: name -> method class, in the catalog's order.
METHODS: dict[str, type[CAMMethod]] = {cls.info.name: cls for cls in (
    CAM, GradCAM, GradCAMpp, XGradCAM, HiResCAM, LayerCAM, SmoothGradCAMpp, ScoreCAM, AblationCAM,
    EigenCAM)}

if list(METHODS) != list(CATALOG):  # pragma: no cover - a programming error, caught by the tests
    raise RuntimeError("camloc.cams: METHODS and CATALOG disagree")


def make_method(model: CamModel, method: str | CAMMethod = "cam", layer: LayerSpec = None,
                **options: Any) -> CAMMethod:
    """An instance of ``method`` (a registry name, case-insensitive, or an instance) for ``model``.

    ``options`` go to the method's constructor (``reshape``, ``relu``, ``batch_size``, ``smooth``,
    ``noise``, ``seed``, and method-specific ones such as ``eps`` or ``center``); ``None`` values are
    ignored.

    Raises:
        ConfigError: unknown method name or option.
        UnsupportedHeadError: ``"cam"`` on a model without a verified GAP -> linear head.
    """
    if isinstance(method, CAMMethod):
        if layer is not None or any(v is not None for v in options.values()):
            raise ConfigError("layer/options: give them when constructing the method instance")
        return method
    if not isinstance(method, str):
        raise ConfigError(f"method={method!r}: expected a method name or a CAMMethod instance")
    key = method.strip().lower()
    cls = METHODS.get(key)
    if cls is None:
        raise ConfigError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    kwargs = {k: v for k, v in options.items() if v is not None}
    try:
        return cls(model, layer, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"method={key!r}: {exc}") from exc
