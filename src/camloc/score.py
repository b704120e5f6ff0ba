"""Scoring saved maps (from camloc, wsolevaluation or any other tool) without a model.

Maps are read from ``MAPS/<image_id>.npy`` (wsolevaluation's ``scoremaps`` layout): one 2-D float
array per image, in ``[0, 1]``, at the evaluation size (GT boxes are rescaled to each map's size
with integer truncation). ``normalize=True`` min-max normalises maps first (as wsolevaluation's
inference does); without it a map outside ``[0, 1]`` is reported as bad. A missing or bad map is
reported by image id and reason and the rest are scored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from camloc.errors import ConfigError
from camloc.evaluate import EvalState

__all__ = ["score_maps", "load_scoremap"]


def load_scoremap(maps_dir: Path, image_id: str, normalize: bool = False) -> np.ndarray:
    """Read and validate one map; raises ``ValueError`` with the reason."""
    from camloc.metrics import normalize_minmax

    path = maps_dir / f"{image_id}.npy"
    if not path.is_file():
        raise ValueError(f"missing map {path}")
    try:
        m = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read {path}: {exc}") from exc
    m = np.squeeze(m)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"{path}: expected a 2-D map, got shape {m.shape}")
    m = m.astype(np.float32)
    if normalize:
        return normalize_minmax(m)
    if np.isnan(m).any():
        raise ValueError(f"{path}: map contains NaN (use --normalize to zero such maps)")
    if m.min() < 0 or m.max() > 1:
        raise ValueError(f"{path}: values outside [0, 1] ({m.min():.3g}..{m.max():.3g}); "
                         f"use --normalize")
    return m


def score_maps(maps_dir: str | os.PathLike[str], dataset: Any, interval: float = 0.01,
               fixed_threshold: float = 0.2, normalize: bool = False, batch: int = 64,
               progress: Callable[[int, int], None] | None = None, workers: int = 1) -> EvalState:
    """Score every sample's saved map; returns the filled accumulators (see evaluate.EvalState).

    ``workers > 1`` scores strided shards of the dataset in that many processes and merges their
    accumulators (merging is exact: the numbers are those of one process); ``workers=0`` uses
    every CPU (at most 16).
    """
    if workers == 0:
        workers = min(16, os.cpu_count() or 1)
    if workers < 0:
        raise ConfigError(f"workers={workers}: must be >= 0")
    workers = min(workers, max(1, len(dataset.samples)))
    if workers > 1:
        return _score_parallel(maps_dir, dataset, interval, fixed_threshold, normalize, batch,
                               progress, workers)
    from camloc.data.datasets import load_gt_mask
    from camloc.metrics import (ClassificationAccumulator, LocalizationAccumulator, PxAPAccumulator,
                                rescale_gt_boxes)

    maps_dir = Path(maps_dir)
    if not maps_dir.is_dir():
        raise ConfigError(f"--maps {maps_dir}: not a folder")
    samples = list(dataset.samples)
    has_boxes = any(len(s.boxes) for s in samples)
    has_masks = any(s.mask_paths for s in samples)
    if not (has_boxes or has_masks):
        raise ConfigError(f"dataset {dataset.name!r} has neither boxes nor masks to score against")
    state = EvalState(classification=ClassificationAccumulator(),
                      localization=LocalizationAccumulator(interval=interval,
                                                           fixed_threshold=fixed_threshold)
                      if has_boxes else None,
                      pxap=PxAPAccumulator(interval=interval) if has_masks else None)
    t0 = time.perf_counter()
    pending: list[tuple[Any, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        maps = np.stack([m for _, m in pending])
        h, w = maps.shape[1:]
        if state.localization is not None:
            boxes = []
            for s, _ in pending:
                if s.size is None:
                    raise ConfigError(f"{s.image_id}: image size unknown (image_sizes.txt) — "
                                      f"needed to rescale its boxes to the map")
                boxes.append(rescale_gt_boxes(s.boxes, s.size, (w, h)))
            state.localization.update(maps, boxes, image_ids=[s.image_id for s, _ in pending])
        if state.pxap is not None:
            state.pxap.update(maps, np.stack([load_gt_mask(s, (w, h)) for s, _ in pending]))
        state.images += len(pending)
        pending.clear()

    for n, s in enumerate(samples, 1):
        try:
            m = load_scoremap(maps_dir, s.image_id, normalize)
        except ValueError as exc:
            state.failed.append({"path": str(maps_dir / f"{s.image_id}.npy"),
                                 "image_id": s.image_id, "error": str(exc)})
            continue
        if pending and pending[0][1].shape != m.shape:
            flush()
        pending.append((s, m))
        if len(pending) >= batch:
            flush()
        if progress and (n % 64 == 0 or n == len(samples)):
            progress(n, len(samples))
    flush()
    state.seconds = time.perf_counter() - t0
    return state


def _score_shard(args: tuple[Any, ...]) -> EvalState:
    maps_dir, dataset, interval, fixed_threshold, normalize, batch = args
    return score_maps(maps_dir, dataset, interval, fixed_threshold, normalize, batch, None, 1)


def _score_parallel(maps_dir: Any, dataset: Any, interval: float, fixed_threshold: float,
                    normalize: bool, batch: int, progress: Callable[[int, int], None] | None,
                    workers: int) -> EvalState:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    t0 = time.perf_counter()
    shards = [dataset.shard(r, workers) for r in range(workers)]
    # fork: the workers inherit the loaded modules (no torch re-import); they use NumPy and OpenCV.
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
