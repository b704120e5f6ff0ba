"""Scoring saved maps (from camloc, wsolevaluation or any other tool) without a model.

Maps are read from ``MAPS/<image_id>.npy`` (wsolevaluation's ``scoremaps`` layout): one 2-D array
per image, scored as saved, at its own size; GT boxes are rescaled to each map's size with
wsolevaluation's integer truncation, GT masks resized to it (nearest neighbour). Without
``normalize`` a map must lie in ``[0, 1]``; with it, maps are min-max normalised as wsolevaluation's
inference does (a map with NaN, or a constant map, becomes zeros). A map that cannot be scored
(missing, unreadable, not 2-D, complex, infinite values, ...) is reported by image id and reason,
and the rest are scored.

>>> check_settings(interval=0.01, fixed_threshold=0.2, workers=1)
>>> check_settings(interval=float("nan"), fixed_threshold=0.2)
Traceback (most recent call last):
...
camloc.errors.ConfigError: --cam-curve-interval must be a number in (0, 1) with at most 10000 thresholds, got nan
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from camloc.errors import CamlocError, ConfigError
from camloc.evaluation.options import check_settings
from camloc.evaluation.state import EvalState

__all__ = ["score_maps", "load_scoremap", "check_settings", "score_protocol", "build_score_report",
           "fill_sizes",
           "MAX_MAP_PIXELS"]

MAX_MAP_PIXELS = 100_000_000  # a larger map is refused (it would need gigabytes to score)
_BATCH_PIXELS = 1 << 24  # maps held at once before scoring (about 128 MB of float64)


class _Refused(ValueError):
    """A readable file camloc will not score (the message says why)."""


def _read_npy(path: Path) -> np.ndarray:
    """The array in ``path``, refusing pickles and maps above :data:`MAX_MAP_PIXELS` before
    reading their data."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(f)
        else:
            shape, _, dtype = fmt.read_array_header_2_0(f)
        if math.prod(shape) > MAX_MAP_PIXELS:
            raise _Refused(f"{path}: {math.prod(shape):,} values, more than the "
                             f"{MAX_MAP_PIXELS:,} camloc scores in one map")
        if dtype.hasobject:
            raise _Refused(f"{path}: holds Python objects (dtype {dtype}), not a numeric map")
        f.seek(0)
        return np.load(f, allow_pickle=False)


def load_scoremap(maps_dir: str | os.PathLike[str], image_id: str, normalize: bool = False
                  ) -> np.ndarray:
    """Read and check one map ``maps_dir/<image_id>.npy``; raises ``ValueError`` with the reason.

    Accepted: a 2-D array ``(H, W)`` (a leading or trailing axis of length 1 is dropped, so
    ``(1, H, W)`` and ``(H, W, 1)`` work; ``1 x 1`` maps too) of floats (kept as they are: float16
    becomes float32), integers or booleans (as float64). Refused: complex values (the imaginary part
    would be lost), infinite values, NaN or values outside ``[0, 1]`` without ``normalize``, other
    shapes and dtypes, and ids that lead outside ``maps_dir``. With ``normalize``: min-max
    normalisation (:func:`camloc.metrics.normalize_minmax`; NaN or constant maps become zeros).
    """
    from camloc.metrics import normalize_minmax

    from camloc.data.paths import safe_relpath

    root = Path(maps_dir)
    path = root / safe_relpath(image_id, ".npy")  # where evaluate --save-maps writes it
    base = os.path.normpath(os.path.abspath(root))
    if os.path.commonpath([base, os.path.normpath(os.path.abspath(path))]) != base:
        raise ValueError(f"{path}: the image id leads outside --maps {root}")
    if not path.is_file():
        raise ValueError(f"missing map {path}")
    try:
        m = _read_npy(path)
    except _Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one bad map
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    elif m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"{path}: expected a 2-D map (H, W), got shape {m.shape}")
    if np.iscomplexobj(m):
        raise ValueError(f"{path}: complex values (dtype {m.dtype}); camloc will not drop the "
                         f"imaginary part: save the real map (e.g. np.abs or .real)")
    if m.dtype == np.float16:
        m = m.astype(np.float32)
    elif m.dtype.kind in "biu":
        m = m.astype(np.float64)
    elif m.dtype not in (np.float32, np.float64):
        raise ValueError(f"{path}: dtype {m.dtype} is not a real number type")
    if np.isinf(m).any():
        raise ValueError(f"{path}: map contains infinite values; camloc cannot score or normalise "
                         f"it (replace them, e.g. with np.nan_to_num, or drop the map)")
    if normalize:
        return normalize_minmax(m)
    if np.isnan(m).any():
        raise ValueError(f"{path}: map contains NaN (use --normalize to zero such maps)")
    if m.min() < 0 or m.max() > 1:
        raise ValueError(f"{path}: values outside [0, 1] ({m.min():.3g}..{m.max():.3g}); "
                         f"use --normalize")
    return np.ascontiguousarray(m)


def score_maps(maps_dir: str | os.PathLike[str], dataset: Any, interval: float = 0.01,
               fixed_threshold: float = 0.2, normalize: bool = False, batch: int = 64,
               progress: Callable[[int, int], None] | None = None, workers: int = 1) -> EvalState:
    """Score every sample's saved map; returns the filled accumulators (see evaluate.EvalState).

    ``workers > 1`` scores strided shards of the dataset in that many processes and merges their
    accumulators (merging is exact: the numbers are those of one process); ``workers=0`` uses
    every CPU (at most 16). Settings are checked first (:func:`check_settings`). A sample that
    cannot be scored (bad map, no size to rescale its boxes, no box, unreadable mask) is reported
    in ``state.failed`` and the rest are scored.
    """
    check_settings(interval, fixed_threshold, workers, batch)
    maps_dir = Path(maps_dir)
    if not maps_dir.is_dir():
        raise ConfigError(f"--maps {maps_dir}: not a folder")
    samples = list(dataset.samples)
    if not any(len(s.boxes) for s in samples) and not any(s.mask_paths for s in samples):
        raise ConfigError(f"dataset {dataset.name!r} has neither boxes nor masks to score against")
    if workers == 0:
        workers = min(16, os.cpu_count() or 1)
    workers = min(int(workers), max(1, len(samples)))
    _choose_engine(maps_dir, samples, normalize)
    if workers > 1:
        return _score_parallel(maps_dir, dataset, interval, fixed_threshold, normalize, batch,
                               progress, workers)
    return _score_shard((maps_dir, dataset, interval, fixed_threshold, normalize, batch), progress)


def _choose_engine(maps_dir: Path, samples: list[Any], normalize: bool) -> None:
    """Let the compiled engine decide on the whole job (before any fork, so that workers inherit
    compiled code): the pixels of the first readable map times the number of samples."""
    from camloc.metrics import _jit

    for s in samples[:8]:
        try:
            m = load_scoremap(maps_dir, s.image_id, normalize)
        except ValueError:
            continue
        _jit.engine(m.size * len(samples))
        return


def _score_shard(args: tuple[Any, ...], progress: Callable[[int, int], None] | None = None
                 ) -> EvalState:
    from camloc.data.datasets import load_gt_mask
    from camloc.metrics import (ClassificationAccumulator, LocalizationAccumulator, PxAPAccumulator,
                                rescale_gt_boxes)

    from camloc.data.paths import safe_relpath

    maps_dir, dataset, interval, fixed_threshold, normalize, batch = args
    samples = list(dataset.samples)
    has_boxes = any(len(s.boxes) for s in samples)
    has_masks = any(s.mask_paths for s in samples)
    state = EvalState(classification=ClassificationAccumulator(),
                      localization=LocalizationAccumulator(interval=interval,
                                                           fixed_threshold=fixed_threshold)
                      if has_boxes else None,
                      pxap=PxAPAccumulator(interval=interval) if has_masks else None)
    t0 = time.perf_counter()
    pending: list[tuple[Any, np.ndarray, np.ndarray | None, np.ndarray | None]] = []

    def fail(s: Any, reason: str) -> None:
        state.failed.append({"path": str(maps_dir / safe_relpath(s.image_id, ".npy")),
                             "image_id": s.image_id,
                             "error": reason})

    def flush() -> None:
        if not pending:
            return
        maps = np.stack([m for _, m, _, _ in pending])
        if state.localization is not None:
            state.localization.update(maps, [b for _, _, b, _ in pending],
                                      image_ids=[s.image_id for s, _, _, _ in pending])
        if state.pxap is not None:
            state.pxap.update(maps, np.stack([k for _, _, _, k in pending]))
        state.images += len(pending)
        pending.clear()

    for n, s in enumerate(samples, 1):
        try:
            m = load_scoremap(maps_dir, s.image_id, normalize)
            h, w = m.shape
            boxes = mask = None
            if has_boxes:
                if s.size is None:
                    raise ValueError("image size unknown (not in the metadata, and the image "
                                     "header could not be read): needed to rescale the GT boxes "
                                     "to the map")
                if not len(s.boxes):
                    raise ValueError("no GT box for this image in localization.txt")
                boxes = rescale_gt_boxes(s.boxes, s.size, (w, h))
            if has_masks:
                mask = load_gt_mask(s, (w, h))
        except (ValueError, CamlocError) as exc:
            fail(s, str(exc))
            continue
        if pending and (pending[0][1].shape != m.shape or pending[0][1].dtype != m.dtype):
            flush()
        pending.append((s, m, boxes, mask))
        if len(pending) >= batch or len(pending) * m.size >= _BATCH_PIXELS:
            flush()
        if progress and (n % 64 == 0 or n == len(samples)):
            progress(n, len(samples))
    flush()
    state.seconds = time.perf_counter() - t0
    return state


def _score_parallel(maps_dir: Any, dataset: Any, interval: float, fixed_threshold: float,
                    normalize: bool, batch: int, progress: Callable[[int, int], None] | None,
                    workers: int) -> EvalState:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    t0 = time.perf_counter()
    shards = [dataset.shard(r, workers) for r in range(workers)]
    # fork: the workers inherit the loaded modules and compiled kernels (no torch re-import, no
    # recompilation); they use NumPy, OpenCV and single-threaded numba code.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    states: list[EvalState | None] = [None] * workers
    done = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(_score_shard, (maps_dir, sh, interval, fixed_threshold, normalize,
                                              batch)): r for r, sh in enumerate(shards)}
        for fut in as_completed(futures):
            r = futures[fut]
            states[r] = fut.result()
            done += len(shards[r].samples)
            if progress:
                progress(done, len(dataset.samples))
    done_states = [st for st in states if st is not None]  # every future has returned
    merged = done_states[0]
    for st in done_states[1:]:
        merged.merge(st)
    merged.seconds = time.perf_counter() - t0
    return merged


def score_protocol(interval: float, fixed_threshold: float, normalize: bool,
                   calibrate: float | None = None) -> dict[str, Any]:
    """What ``score`` does to maps and ground truth, for the report's ``protocol`` block."""
    return {
        "name": "maps",
        "cam_curve_interval": interval,
        "thresholds": len(np.arange(0, 1, interval)),
        "fixed_threshold": fixed_threshold,
        "calibrated_threshold": calibrate,
        "maps": "each <image_id>.npy as saved (2-D; a leading or trailing axis of length 1 is "
                "dropped), float32/float64 values as they are",
        "resize": "none: each map is scored at its own size",
        "normalization": ("minmax (wsolevaluation's normalize_scoremap: a map with NaN, or a "
                          "constant map, becomes zeros)" if normalize
                          else "none: maps must lie in [0, 1]"),
        "quantization": "u8 = (float64(map) * 255).astype(uint8); foreground at threshold tau: "
                        "u8 > int(tau * max(u8))",
        "gt_boxes": "rescaled from the image size (the metadata's, else the image file's "
                    "header) to each map's size: int(float(c) * map_side / image_side) "
                    "(wsolevaluation's resize_bbox)",
        "gt_masks": "resized to each map's size, nearest neighbour, thresholded at 0.5",
    }


def fill_sizes(dataset: Any) -> Any:
    """Make every image size that scoring needs known and right, reading image headers only.

    Sizes the metadata gives are checked against the headers (a disagreement raises
    :class:`~camloc.errors.DatasetError` naming the metadata file and line: the boxes would be
    rescaled wrongly); sizes it does not give (CUB, ILSVRC CSV, CSV/JSON without width/height)
    are read from the headers when the dataset has boxes. Returns the
    :class:`~camloc.data.sample.SizeFill` (``opened``: ids whose header gave the size;
    ``failed``: ``(id, reason)`` of headers that could not be read; those samples are then
    reported as failed by :func:`score_maps`)."""
    from camloc.data.sample import SizeFill

    dataset.check_sizes()
    if not any(len(s.boxes) for s in dataset.samples):
        return SizeFill([], [])
    return dataset.fill_sizes_from_headers()


def build_score_report(state: EvalState, dataset: Any, maps_dir: str | os.PathLike[str],
                       interval: float, fixed_threshold: float, normalize: bool,
                       calibrate: float | None = None, sizes: Any = None) -> dict[str, Any]:
    """The report of a ``score`` run: :func:`camloc.evaluation.evaluate.build_report`'s figures, counts and
    versions, with the ``protocol`` block of :func:`score_protocol` (what ``score`` did, not the
    evaluate pipeline's resizing and normalisation)."""
    from camloc.evaluation.evaluate import build_report

    report = build_report(state, None, dataset, "maps", interval, extra={"maps": str(maps_dir)},
                          calibrate=calibrate)
    report["protocol"] = score_protocol(interval, fixed_threshold, normalize, calibrate)
    if sizes is not None:
        report["image_sizes"] = {"from_headers": len(sizes.opened),
                                 "header_failed": len(sizes.failed),
                                 "opened": list(sizes.opened[:100])}
    return report
