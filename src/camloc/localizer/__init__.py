"""A few-shot, class-agnostic localizer on top of the class map (``camloc localizer fit``).

Modules: ``model`` (:class:`Localizer`, :class:`LocalizedMethod`, saving and loading a localizer
folder), ``fit`` (:func:`fit_localizer`: features of the frozen network, the foreground head, the
choice of combination, TTA and threshold on images kept apart from the head's).

>>> import camloc                                                          # doctest: +SKIP
>>> from camloc.data import open_dataset                                   # doctest: +SKIP
>>> loc = fit_localizer(camloc.load_model(), open_dataset("imagenet-val-dev"),
...                     holdout=0.5)                                       # doctest: +SKIP
>>> save_localizer(loc, "loc")                                             # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"Localizer": "model", "LocalizedMethod": "model", "load_localizer": "model",
            "save_localizer": "model", "with_localizer": "model", "model_fingerprint": "model",
            "fit_localizer": "fit", "split_ids": "fit", "parse_share": "fit", "fit_head": "fit"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'camloc.localizer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"camloc.localizer.{module}"), name)
    globals()[name] = value
    return value
