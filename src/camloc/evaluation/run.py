"""The whole ``camloc evaluate`` run as one pipeline: open the dataset, load the model, score
(one process or the ranks of ``torchrun``), merge the shards, and write ``report.json``,
``per_image.jsonl`` and ``report.html`` into ``--out``.

Everything the user gives is checked before ``--out`` is created: the options, the dataset's
metadata, its classes against the model's, and the metadata's image sizes against the image
headers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camloc.evaluation.state import EvalState, merge_states

__all__ = ["EvalResult", "open_eval_dataset", "run_evaluation", "PER_IMAGE_NAME"]

PER_IMAGE_NAME = "per_image.jsonl"


@dataclass
class EvalResult:
    """What :func:`run_evaluation` wrote, with the merged state and the report."""

    report: dict[str, Any]
    state: EvalState
    json_path: Path
    html_path: Path
    per_image_path: Path


def open_eval_dataset(path: str | os.PathLike[str], fmt: str = "auto", split: str | None = None,
                      image_root: str | os.PathLike[str] | None = None,
                      synsets: str | os.PathLike[str] | None = None,
                      num_classes: int | None = None) -> Any:
    """:func:`camloc.data.open.open_dataset` with the CLI's ``--image-root``, ``--synsets`` and
    ``--num-classes`` (``None``: not given; passed only when given, so a format that does not
    take one refuses it by name)."""
    from camloc.data.open import open_dataset

    kw: dict[str, Any] = {}
    if image_root is not None:
        kw["image_root"] = str(image_root)
    if synsets is not None:
        kw["synsets"] = str(synsets)
    if num_classes is not None:
        kw["num_classes"] = num_classes
    return open_dataset(path, format=fmt, split=split, **kw)


def run_evaluation(dataset: Any, out: str | os.PathLike[str], *, model: str = "efficientnet_lite0",
                   weights: str | None = "DEFAULT", head: str | None = None, method: str = "cam",
                   layer: Any = None, method_options: dict[str, Any] | None = None,
                   protocol: str = "wsol", interval: float = 0.01, fixed_threshold: float = 0.2,
                   batch_size: int = 32, workers: int = 2, device: str = "auto",
                   save_maps: bool = False, gallery: int = 6, calibrate: str | float | None = None,
                   progress: Callable[[int, int], None] | None = None) -> EvalResult | None:
    """Evaluate a model (by name or folder) on ``dataset`` and write the run's files to ``out``.

    Under ``torchrun`` every rank scores its shard; rank 0 merges, writes and returns the result,
    the other ranks return ``None``.
    """
    from camloc.distributed import DistContext
    from camloc.evaluation.calibration import calibration_threshold
    from camloc.evaluation.evaluate import (build_report, check_eval_settings, evaluate_state,
                                            make_engine, method_block, scoremap_of,
                                            write_per_image)
    from camloc.evaluation.gallery import pick_extremes, render_gallery
    from camloc.models import load_model
    from camloc.report import write_report

    tau = calibration_threshold(calibrate)
    check_eval_settings(interval, fixed_threshold, batch_size, workers, tau)
    out = Path(out)
    ctx = DistContext.from_env(device)
    try:
        w = None if weights is None or str(weights).lower() == "none" else weights
        cam_model = load_model(model, weights=w, device=ctx.device, head=head)
        engine = make_engine(cam_model, method, layer, method_options)
        shard = dataset.shard(ctx.rank, ctx.world_size) if ctx.distributed else dataset
        if ctx.distributed:  # the whole dataset is checked once, on every rank alike
            from camloc.evaluation.evaluate import check_fits_model

            check_fits_model(cam_model, dataset)
        maps_dir = out / "scoremaps" if save_maps else None
        state = evaluate_state(cam_model, shard, protocol, interval, fixed_threshold, batch_size,
                               workers, maps_dir, progress if ctx.is_main else None,
                               method=engine, check_dataset=not ctx.distributed)
        states = ctx.gather_objects(state)
    finally:
        ctx.close()
    if not ctx.is_main:
        return None
    merged = merge_states(states)
    report = build_report(merged, cam_model, dataset, protocol, interval,
                          extra={"world_size": ctx.world_size}, calibrate=tau,
                          method=method_block(engine, method_options))
    ious, picks = [], []
    if merged.localization is not None:
        recs = merged.localization.per_image
        ious = [r["iou"] for r in recs if r.get("iou") is not None]
        picks = pick_extremes(recs, gallery)
    items = render_gallery(picks, dataset, lambda s: scoremap_of(engine, s, protocol))
    json_path, html_path = write_report(out, report, ious, items)
    per_image_path = out / PER_IMAGE_NAME
    write_per_image(per_image_path, merged, dataset)
    return EvalResult(report, merged, Path(json_path), Path(html_path), per_image_path)

