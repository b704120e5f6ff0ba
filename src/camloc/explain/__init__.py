"""``camloc explain``, the library behind it: images in, classes + maps + boxes out.

Modules:

* :mod:`camloc.explain.api`: :func:`explain` and :func:`explain_batch` (images in memory or on
  disk -> :class:`Explanation` objects);
* :mod:`camloc.explain.inputs`: the inputs of a run (files, folders, globs, lists, datasets),
  streamed in input order;
* :mod:`camloc.explain.run`: :func:`run_explain`, a run folder (overlays, ``results.jsonl``, box
  files, manifest; resume; torchrun ranks) for a loaded model and :class:`ExplainSettings`;
* :mod:`camloc.explain.parts`: the rank record files of a torchrun run and their merge;
* :mod:`camloc.explain.job`: :func:`run_explain_job`, the whole ``camloc explain`` job from the
  user's options (validation, calibration, model loading, torchrun ranks); the CLI calls it.

``import camloc.explain.<module>`` stays light; the names below load their module on first use.
On the ``camloc`` package, ``camloc.explain`` is the function :func:`explain` (``camloc.explain(
model, "photo.jpg")``); the submodules imported so far are reachable through it as well
(``camloc.explain.run``), so ``import camloc.explain.run as er`` works.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from camloc.explain.api import Explanation, explain, explain_batch, make_method
    from camloc.explain.inputs import ExplainInputs
    from camloc.explain.job import ExplainJobResult, run_explain_job
    from camloc.explain.run import ExplainSettings, RunSummary, run_explain

__all__ = ["Explanation", "explain", "explain_batch", "make_method", "ExplainInputs",
           "ExplainSettings", "RunSummary", "run_explain", "ExplainJobResult", "run_explain_job"]

# public name -> the submodule that defines it (imported on first access)
_LAZY = {"Explanation": "api", "explain": "api", "explain_batch": "api", "make_method": "api",
         "ExplainInputs": "inputs", "ExplainSettings": "run", "RunSummary": "run",
         "run_explain": "run", "ExplainJobResult": "job", "run_explain_job": "job"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _mirror_submodules() -> None:
    """Make this package's imported submodules attributes of the function :func:`explain`
    too (``camloc.explain`` is that function on the ``camloc`` package)."""
    api = sys.modules.get(f"{__name__}.api")
    fn = getattr(api, "explain", None)
    if fn is None:
        return
    for name, value in list(vars(sys.modules[__name__]).items()):
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            fn.__dict__.setdefault(name, value)


class _Package(types.ModuleType):
    """The import system binds each submodule on the package when it is imported; this binds it
    on the function :func:`explain` as well."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if isinstance(value, types.ModuleType):
            _mirror_submodules()


sys.modules[__name__].__class__ = _Package
