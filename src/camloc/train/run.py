"""The whole ``camloc train`` job from the user's options: :func:`run_training`.

It parses the options the command line gives as text (``--arch-opt KEY=VALUE``, ``--crop-scale
MIN,MAX``), builds the :class:`~camloc.train.config.TrainConfig` (checked by :func:`train`), and
handles the ``torchrun`` ranks: every rank trains, only rank 0 reports progress and returns the
result.

>>> parse_arch_opts(["last_stride=1", "width=16", "name=tiny"])
{'last_stride': 1, 'width': 16, 'name': 'tiny'}
>>> parse_crop_scale("0.08,1")
(0.08, 1.0)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from camloc.errors import ConfigError
from camloc.train.config import TrainConfig
from camloc.train.trainer import TrainReporter, TrainResult, train

__all__ = ["parse_arch_opts", "parse_crop_scale", "run_training"]


def parse_arch_opts(items: Sequence[str] | None) -> dict[str, Any]:
    """``--arch-opt KEY=VALUE`` items -> a dict (values read as JSON where they parse)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--arch-opt {item!r}: expected KEY=VALUE, e.g. last_stride=1")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def parse_crop_scale(text: str | Sequence[float]) -> tuple[float, float]:
    """``--crop-scale`` text ``MIN`` or ``MIN,MAX`` (or ``MIN:MAX``) -> ``(min, max)``."""
    if not isinstance(text, str):
        lo, hi = (float(v) for v in text)
        return lo, hi
    parts = [p for p in text.replace(":", ",").split(",") if p.strip()]
    try:
        vals = [float(p) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"--crop-scale {text!r}: expected MIN or MIN,MAX (e.g. 0.08,1)") from exc
    if len(vals) == 1:
        return vals[0], 1.0
    if len(vals) == 2:
        return vals[0], vals[1]
    raise ConfigError(f"--crop-scale {text!r}: expected MIN or MIN,MAX")


def run_training(dataset: str | os.PathLike[str], arch: str, *,
                 arch_opts: Sequence[str] | None = None,
                 crop_scale: str | Sequence[float] = "0.08,1",
                 reporter: Callable[[], AbstractContextManager[TrainReporter]] | None = None,
                 **settings: Any) -> TrainResult | None:
    """Train ``arch`` on ``dataset`` as ``camloc train`` does.

    ``arch_opts``: ``KEY=VALUE`` texts (:func:`parse_arch_opts`); ``crop_scale``: ``"MIN,MAX"``
    (:func:`parse_crop_scale`); ``settings``: any other :class:`TrainConfig` field (``out``,
    ``epochs``, ``dataset_format``, ...). ``reporter()`` makes the progress reporter, entered
    on rank 0 only. Under ``torchrun`` every rank calls this; rank 0 returns the result, the
    other ranks ``None``.

    Raises:
        ConfigError: a bad option (see :meth:`TrainConfig.checked`), an output folder holding
            another run; and what :func:`camloc.train.train` raises.
    """
    cfg = TrainConfig(dataset=Path(dataset), arch=arch, arch_kwargs=parse_arch_opts(arch_opts),
                      crop_scale=parse_crop_scale(crop_scale), **settings)
    main = int(os.environ.get("RANK", "0")) == 0
    if not main:
        train(cfg)
        return None
    with (reporter() if reporter is not None else contextlib.nullcontext()) as rep:
        return train(cfg, reporter=rep)
