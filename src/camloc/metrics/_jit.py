"""The compiled (numba) engine for map scoring, and when to use it.

The NumPy/OpenCV engine in :mod:`camloc.metrics._levels` is the reference and the fallback; this
engine gives the same counts (the tests compare them on random maps, and the V1 levels it cannot
settle are traced with OpenCV by the caller). The algorithm, written in
:mod:`camloc.metrics._jit_kernels`, is the one ``_levels`` describes, as a few passes per map:

* the map is quantised (``int(float64(v) * 255)``) and turned into a class image (how many
  requested levels lie below each pixel), framed by a ring of -1;
* the component tree of its upper level sets (8-connected) is built with union-find over the
  pixels in decreasing order (ties in raster order; counting sort): a set whose lowest value is
  above a joining pixel's is a finished component, alive for the levels between the two;
* while a pixel joins, its box and the change of the 2x2-window counts it brings
  (``2 * contourArea`` of a hole-free outer contour = ``2*Q4 + Q3``, ``4 * Euler number`` =
  ``Q1 - Q3 - 2*QD``, Gray's bit quads) are read from 256-entry tables of its earlier neighbours;
* hole boxes (V2 only), where a hole could change a comparison with an IoU threshold, come from
  the 4-connected tree of the lower level sets, built only up to the highest such level.

When: :func:`engine` decides. Importing numba and loading compiled code costs about a second,
compiling it the first time tens of seconds (both measured by ``benchmarks/bench_score.py``), so
small jobs keep the NumPy engine: numba is used for a job of at least ``_WARM_WORTH_S`` seconds of
expected NumPy work when the compiled code is in numba's disk cache, and of at least
``_COLD_WORTH_S`` seconds otherwise. ``CAMLOC_NO_NUMBA=1`` turns it off, ``CAMLOC_NUMBA=1``
forces it (tests, benchmarks). Compiled code is cached on disk (``cache=True``: numba writes next
to the module or, if that folder is read-only, in its user cache folder, or in ``NUMBA_CACHE_DIR``).

Threads: the kernels are serial ``nogil`` code, so no numba threading layer starts and several
``score`` worker processes never oversubscribe the cores.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import Any

import numpy as np

__all__ = ["engine", "kernels", "disabled_by_env", "forced_by_env", "workspace",
           "fits", "note_numpy_seconds"]

_WARM_WORTH_S = 1.0   # expected NumPy seconds that pay for importing numba and loading its cache
_COLD_WORTH_S = 30.0  # ... that pay for compiling
_NUMPY_S_PER_PIXEL = 50e-9  # the NumPy engine's cost per map pixel (any interval), about


def disabled_by_env() -> bool:
    """True when ``CAMLOC_NO_NUMBA`` asks for the NumPy/OpenCV engine only."""
    return os.environ.get("CAMLOC_NO_NUMBA", "").strip().lower() not in ("", "0", "false", "no")


def forced_by_env() -> bool:
    """True when ``CAMLOC_NUMBA`` asks for the compiled engine whatever the job's size."""
    return os.environ.get("CAMLOC_NUMBA", "").strip().lower() not in ("", "0", "false", "no")


def fits(shape: tuple[int, ...]) -> bool:
    """Whether a map of this shape fits the compiled engine's packing (sides below 65,000)."""
    return len(shape) == 2 and 0 < shape[0] < 65_000 and 0 < shape[1] < 65_000


_LOCK = threading.Lock()
_KERNELS: dict[str, Any] = {}
_STATE: dict[str, Any] = {"numpy_s": 0.0, "ready": False, "broken": False, "checked_warm": None}
_LOCAL = threading.local()


def kernels() -> dict[str, Any] | None:
    """The compiled functions (compiled or loaded from cache on their first call), or None when
    numba is not installed or ``CAMLOC_NO_NUMBA`` is set."""
    if disabled_by_env():
        return None
    if _KERNELS:
        return _KERNELS
    with _LOCK:
        if not _KERNELS:
            if importlib.util.find_spec("numba") is None:
                return None
            try:
                from camloc.metrics import _jit_kernels as k
            except ImportError:  # a broken numba install: the NumPy engine still works
                return None
            _KERNELS.update(map_outcomes=k.map_outcomes, level_outcomes=k.level_outcomes,
                            add_counts=k.add_counts, histogram_fg_bg=k.histogram_fg_bg)
    return _KERNELS


def _sample_args() -> tuple[Any, ...]:
    ws = workspace(4, 4)
    return (np.zeros((4, 4)), np.arange(0, 1, 0.25), np.zeros((1, 4), np.int64),
            np.array([0.5]), False, ws)


def _cache_is_warm(k: dict[str, Any]) -> bool:
    """Whether numba's disk cache holds ``map_outcomes`` for float64 maps (nothing is compiled)."""
    try:
        from numba import typeof

        disp = k["map_outcomes"]
        sig = tuple(typeof(a) for a in _sample_args())
        return disp._cache.load_overload(sig, disp.targetctx) is not None
    except Exception:  # noqa: BLE001 - a private numba API; unknown means "not warm"
        return False


def _warm_up(k: dict[str, Any]) -> None:
    """Compile (or load) every kernel with the argument types the callers use."""
    args = _sample_args()
    k["map_outcomes"](*args)
    k["level_outcomes"](np.zeros((4, 4), np.uint8), np.arange(3, dtype=np.int64), args[2], args[3],
                        False, args[5])
    k["add_counts"](np.zeros(4, np.int64), np.zeros(1), np.zeros(1), args[3],
                    np.zeros(4, np.int64), np.zeros((1, 4), np.int64), np.zeros(4, np.int64),
                    np.zeros(4, np.int64), True, True)
    for dt in (np.float32, np.float64):
        k["histogram_fg_bg"](np.zeros((2, 2), dt), np.zeros((2, 2), np.uint8), np.arange(0, 4.0),
                             1.0, np.zeros(3, np.int64), np.zeros(3, np.int64))


def engine(expected_pixels: int = 0) -> dict[str, Any] | None:
    """The compiled kernels if they should score the next maps, else None (use the NumPy engine).

    ``expected_pixels``: map pixels the caller is about to score (the whole job if known). The
    NumPy seconds spent so far in this process (:func:`note_numpy_seconds`) count too, so a long
    job that did not announce its size switches over once it has proved long. The first positive
    answer compiles (or loads) every kernel, so forked workers inherit them.
    """
    if disabled_by_env() or _STATE["broken"]:
        return None
    if _STATE["ready"]:
        return _KERNELS
    expected_s = expected_pixels * _NUMPY_S_PER_PIXEL + _STATE["numpy_s"]
    if not forced_by_env() and expected_s < _WARM_WORTH_S:
        return None
    k = kernels()
    if k is None:
        return None
    if not forced_by_env() and expected_s < _COLD_WORTH_S:
        if _STATE["checked_warm"] is None:
            _STATE["checked_warm"] = _cache_is_warm(k)
        if not _STATE["checked_warm"]:
            return None
    with _LOCK:
        if not _STATE["ready"] and not _STATE["broken"]:
            try:
                _warm_up(k)
            except Exception as exc:  # noqa: BLE001 - e.g. a corrupt numba cache
                import warnings

                warnings.warn(f"camloc: the compiled scoring engine failed to load ({exc!r}); "
                              f"scoring with the NumPy engine (same results, slower)",
                              RuntimeWarning, stacklevel=2)
                _STATE["broken"] = True
                return None
            _STATE["ready"] = True
    return k


def note_numpy_seconds(seconds: float) -> None:
    """Record time spent in the NumPy engine (see :func:`engine`)."""
    _STATE["numpy_s"] += seconds


def workspace(h: int, w: int) -> tuple[np.ndarray, ...]:
    """Per-thread scratch buffers for ``h x w`` maps, reused from map to map (fresh memory for
    every map would be page-faulted in again each time): order, union-find links, sets, upper and
    lower tree nodes, the framed class image, the masks and the quantised map."""
    cache = getattr(_LOCAL, "ws", None)
    if cache is None:
        cache = _LOCAL.ws = {}
    ws = cache.get((h, w))
    if ws is None:
        if len(cache) > 8:
            cache.clear()
        n = (h + 2) * (w + 2)
        ws = cache[(h, w)] = (np.empty(n, np.int64), np.empty(n, np.int32),
                              np.empty((n, 8), np.int32), np.empty((n, 8), np.int32),
                              np.empty((n, 8), np.int32), np.empty(n, np.int16),
                              np.empty(n, np.uint16), np.empty((h, w), np.uint8))
    return ws


def select(mode: str, values: int, usable: bool = True) -> dict[str, Any] | None:
    """The kernels an accumulator with ``engine=mode`` scores its next ``values`` map values with,
    or None for the NumPy engine. ``usable``: whether these maps can go to the compiled engine at
    all. ``mode="numba"`` without numba raises :class:`~camloc.errors.MetricError`."""
    if mode == "numpy" or not usable:
        return None
    if mode == "numba":
        k = kernels()
        if k is None:
            from camloc.errors import MetricError

            raise MetricError("engine='numba' needs numba (pip install numba) and "
                              "CAMLOC_NO_NUMBA unset; use engine='auto' or 'numpy'")
        return k
    return engine(values)
