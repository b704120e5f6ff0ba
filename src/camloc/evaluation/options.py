"""The checks of the scoring settings shared by ``camloc evaluate`` and ``camloc score``.

Below both :mod:`camloc.evaluation.evaluate` and :mod:`camloc.evaluation.score` (which re-exports
:func:`check_settings`), so neither imports the other for it.

>>> check_settings(interval=0.01, fixed_threshold=0.2, workers=1)
>>> check_settings(interval=0.01, fixed_threshold=0.2, workers=-1)
Traceback (most recent call last):
...
camloc.errors.ConfigError: --workers: workers=-1: must be >= 0 (an integer)
"""

from __future__ import annotations

import numpy as np

from camloc.errors import ConfigError

__all__ = ["check_settings"]


def check_settings(interval: object = 0.01, fixed_threshold: object = 0.2, workers: object = 1,
                   batch: object = 64, calibrate: object = None) -> None:
    """Raise :class:`ConfigError` (naming the ``camloc score`` option) unless the settings are
    usable: ``interval`` in (0, 1) with at most 10,000 thresholds, ``fixed_threshold`` and
    ``calibrate`` (if given) points of the grid ``np.arange(0, 1, interval)``, ``workers`` an
    integer >= 0 and ``batch`` >= 1."""
    from camloc.errors import MetricError
    from camloc.metrics import cam_thresholds
    from camloc.metrics.localization import grid_index

    try:
        grid = cam_thresholds(interval)  # type: ignore[arg-type]
    except MetricError:
        raise ConfigError(f"--cam-curve-interval must be a number in (0, 1) with at most 10000 "
                          f"thresholds, got {interval!r}") from None
    for name, tau in (("--fixed-threshold", fixed_threshold), ("--calibrate", calibrate)):
        if tau is None and name == "--calibrate":
            continue
        try:
            grid_index(grid, tau, float(interval), name)  # type: ignore[arg-type]
        except MetricError as exc:
            raise ConfigError(str(exc)) from None
    for name, value, low in (("--workers", workers, 0), ("batch", batch, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name}: {name.lstrip('-')}={value!r}: must be >= {low} "
                              "(an integer)")
