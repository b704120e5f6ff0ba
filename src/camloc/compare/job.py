"""The whole ``camloc compare`` job from the user's options: one function, :func:`run_compare_job`.

It opens the dataset, loads the model, checks what :func:`camloc.compare.compare` would refuse
(and numbers the dataset as the model's classes) before the output folder is created, and runs
the comparison on this process or on every rank of ``torchrun`` (rank 0 merges, writes
``compare.json`` / ``compare.md`` / ``compare.html`` under the output folder's lock, and returns
the report; the other ranks return ``None``).

>>> from camloc.compare.job import run_compare_job                           # doctest: +SKIP
>>> report = run_compare_job("data/cub", "cmp", methods="cam,gradcam", limit=64)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from camloc.defaults import DEFAULT_MODEL, DEFAULT_THRESHOLD
from camloc.errors import ConfigError

__all__ = ["run_compare_job", "parse_road"]

#: ``progress(title)`` -> a context manager yielding ``update(done, total)``, e.g.
#: ``camloc.commands.common.progress_bar``; compare opens one per stage (calibrate, compare).
ProgressFactory = Callable[[str], AbstractContextManager[Callable[[int, int], None]]]


def parse_road(road: str | Sequence[float]) -> tuple[float, ...]:
    """``--road``: ``"20,40,60,80"`` (or numbers) -> percentages of pixels removed."""
    if not isinstance(road, str):
        return tuple(float(p) for p in road)
    try:
        return tuple(float(p) for p in road.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--road {road!r}: expected percentages like 20,40,60,80") from None


def _faithfulness(enabled: bool, steps: int, road: str | Sequence[float], limit: int | None,
                  batch_size: int) -> Any:
    from camloc.compare.run import FaithfulnessSettings

    if limit is not None and limit < 1:
        raise ConfigError(f"--faith-limit {limit}: expected a positive number of images")
    if steps < 1:
        raise ConfigError(f"--steps {steps}: expected a positive number of steps")
    return FaithfulnessSettings(enabled=enabled, steps=steps, road_percentiles=parse_road(road),
                                limit=limit, batch_size=batch_size)


def run_compare_job(
    dataset: str | os.PathLike[str], out: str | os.PathLike[str] = "camloc-compare", *,
    methods: str | Sequence[str] = "all", model: str = DEFAULT_MODEL,
    weights: str | None = "DEFAULT", layer: str | None = None, split: str | None = None,
    fmt: str = "auto", calibrate: str | float | None = None, calibration_split: str | None = None,
    tta: str | None = None, limit: int | None = None, faith_limit: int | None = None,
    faithfulness: bool = True, steps: int = 20, road: str | Sequence[float] = "20,40,60,80",
    fixed_threshold: float = DEFAULT_THRESHOLD, batch_size: int = 16, workers: int = 2,
    faith_batch_size: int = 64, gallery: int = 6, device: str = "auto",
    progress: ProgressFactory | None = None, localizer: str | os.PathLike[str] | None = None,
) -> dict[str, Any] | None:
    """Compare map ``methods`` of ``model`` on the ``dataset`` folder into ``out``, as
    ``camloc compare`` does (the options are its flags; ``None``: not given); returns the
    compare.json dict on rank 0, ``None`` on the other ranks of a torchrun job. ``localizer``:
    a ``camloc localizer fit`` folder, combined into every method's maps (its TTA unless ``tta``).

    Raises:
        ConfigError: an unknown method, bad ``--tta`` / ``--road`` / counts, both calibration
            sources, a method the model cannot run, an ``out`` in use, a localizer folder that
            cannot be read or was fitted on another model.
        DatasetError, ModelError, WeightsError: the dataset or model cannot be used.
    """
    from camloc.compare import compare, parse_tta, resolve_methods
    from camloc.evaluation.calibration import load_calibration

    names = resolve_methods(methods)  # usage errors before anything heavy is loaded
    tta_spec = parse_tta(tta)
    if calibrate is not None and calibration_split is not None:
        raise ConfigError("give either --calibrate or --calibration-split, not both")
    cal = load_calibration(calibrate, names)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: expected a positive number of images")
    if workers < 0:
        raise ConfigError(f"--workers {workers}: expected 0 or more")
    faith = _faithfulness(faithfulness, steps, road, faith_limit, faith_batch_size)
    loc = None
    if localizer is not None:  # a bad folder refused before the model is loaded
        from camloc.localizer.model import load_localizer

        loc = load_localizer(localizer)
    from camloc.compare import check_inputs
    from camloc.data.datasets import open_dataset
    from camloc.distributed import DistContext
    from camloc.evaluation.evaluate import check_fits_model
    from camloc.models import load_model

    ds = open_dataset(dataset, format=fmt, split=split)
    # a --tta given (even "none") overrides the localizer's recommended one
    kw: dict[str, Any] = {"layer": layer, "tta": tta_spec if tta is None else tta_spec or "none",
                          "calibrate_with": cal,
                          "calibration_split": calibration_split, "limit": limit,
                          "faithfulness": faith, "fixed_threshold": fixed_threshold,
                          "batch_size": batch_size, "workers": workers, "gallery": gallery}
    ctx = DistContext.from_env(device)
    try:
        w = None if weights is None or str(weights).lower() == "none" else weights
        cam_model = load_model(model, weights=w, device=ctx.device)
        # what compare() refuses, refused on every rank before --out is created; the dataset
        # numbered as the model's classes (WordNet ids) once, for every stage
        check_inputs(cam_model, ds, methods, layer, check_dataset=False)
        if loc is not None:
            loc.check_model(cam_model)
            kw["localizer"] = loc
        ds = check_fits_model(cam_model, ds)
        kw["check_dataset"] = False
        if not ctx.is_main:  # a torchrun worker: scores its shard; rank 0 merges and writes
            compare(cam_model, ds, methods, dist=ctx, **kw)
            return None
        return _on_main(cam_model, ds, methods, Path(out), ctx, progress, kw)
    finally:
        ctx.close()


def _on_main(model: Any, ds: Any, methods: Any, out: Path, ctx: Any,
             progress: ProgressFactory | None, kw: dict[str, Any]) -> dict[str, Any]:
    """Rank 0 (or the only process): the pass, with one progress display per stage, under
    ``out``'s lock."""
    from camloc.compare import compare
    from camloc.io import folder_lock, refuse_symlink

    with folder_lock(out), contextlib.ExitStack() as stack:
        refuse_symlink(out / "gallery")  # a link to a folder elsewhere: refused before the pass
        current: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in current:  # a new stage: close the previous display
                stack.close()
                current.clear()
                current[stage] = stack.enter_context(progress(stage)) if progress else None
            if current[stage] is not None:
                current[stage](done, total)

        report = compare(model, ds, methods, out=out, progress=update, dist=ctx, **kw)
        stack.close()
    if report is None:  # cannot happen on rank 0, which always gets the merged report
        raise RuntimeError("compare returned no report on rank 0")
    return report
