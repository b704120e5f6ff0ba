"""The whole ``camloc units`` job from the user's options: :func:`run_units_job`.

It checks the options before anything is loaded, opens the data, loads the model (and its
``--head``), resolves ``--classes`` / ``--all`` against the model's classes, and handles the
``torchrun`` ranks (every rank scores its shard; rank 0 merges, writes and returns the result)
around :func:`camloc.units.run.run_units`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from camloc.defaults import DEFAULT_MODEL
from camloc.errors import ConfigError
from camloc.units.run import UnitsResult, UnitsSettings, run_units

__all__ = ["run_units_job"]


def run_units_job(dataset: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  model: str = DEFAULT_MODEL, weights: str | None = "DEFAULT",
                  head: str | None = None, classes: str | None = None, all_classes: bool = False,
                  dataset_format: str = "auto", split: str | None = None,
                  ignore_labels: bool = False, device: str = "auto",
                  progress: Callable[[str], AbstractContextManager[Any]] | None = None,
                  **settings: Any) -> UnitsResult | None:
    """Rank ``dataset``'s class-specific units into ``out`` as ``camloc units`` does.

    ``classes``: comma-separated ids or names (default: the classes the data has images of);
    ``all_classes``: every class of the model; ``settings``: the other
    :class:`~camloc.units.run.UnitsSettings` fields (``top_units``, ``layer``, ``workers``, ...).
    ``progress(title)``: a context manager yielding ``update(done, total)`` (rank 0 only).
    Returns the result on rank 0, None on the other ranks of a ``torchrun`` job.

    Raises:
        ConfigError: a bad option; DatasetError: unreadable data; ModelError, WeightsError,
            UnsupportedHeadError: the model cannot be loaded or has no GAP -> linear head.
    """
    from camloc.data.classes import parse_classes
    from camloc.distributed import DistContext
    from camloc.models import load_model
    from camloc.units.data import open_units_data

    if classes and all_classes:
        raise ConfigError("--classes and --all: give one of them")
    opts = UnitsSettings(**settings)
    opts.check()  # fail on bad options before loading anything
    data = open_units_data(dataset, format=dataset_format, split=split,
                           ignore_labels=ignore_labels)
    ctx = DistContext.from_env(device)
    try:
        cam_model = load_model(model, weights=None if str(weights).lower() == "none" else weights,
                               device=ctx.device, head=head)
        opts.classes = "all" if all_classes else parse_classes(
            classes, list(cam_model.spec.class_names))
        if not ctx.is_main:
            run_units(cam_model, data, out, opts, ctx)
            return None
        title = f" (rank 0 of {ctx.world_size})" if ctx.distributed else ""
        bar = progress(f"units{title}") if progress is not None else contextlib.nullcontext(None)
        with bar as update:
            result = run_units(cam_model, data, out, opts, ctx, update)
    finally:
        ctx.close()
    return result if result.report is not None else None
